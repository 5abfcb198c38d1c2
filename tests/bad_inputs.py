"""Bad inputs, each built by mutating a copy of the ``tiny`` simulated dataset (shared by the checks' tests).

Each case: mutate the dataset copy, return (file the message must name, words the message must contain); with
the exit code it must give and the extra command-line flags it needs.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

FMRIPREP = Path("derivatives") / "fmriprep"


def _one(bids: Path, pattern: str) -> Path:
    """The first file of sub-01 matching ``pattern`` (run-01 sorts first)."""
    return sorted((bids / "sub-01").rglob(pattern)
                  if not pattern.startswith("derivatives") else bids.glob(pattern))[0]


def _preproc_bold(bids: Path) -> Path:
    return _one(bids, "derivatives/fmriprep/sub-01/**/*run-01_*desc-preproc_bold.nii.gz")


def _events(bids: Path) -> Path:
    return _one(bids, "*run-01_events.tsv")


def _truncated_bold(bids: Path) -> tuple[Path, list[str]]:
    bold = _preproc_bold(bids)
    data = bold.read_bytes()
    bold.write_bytes(data[: len(data) // 2])
    return bold, ["cannot read"]


def _unreadable_bold(bids: Path) -> tuple[Path, list[str]]:
    bold = _preproc_bold(bids)
    bold.write_bytes(gzip.compress(b"this is not a NIfTI file" * 20))
    return bold, ["NIfTI"]


def _bold_missing(bids: Path) -> tuple[Path, list[str]]:
    _preproc_bold(bids).unlink()
    return _one(bids, "*run-01_bold.nii.gz"), ["preprocessed BOLD not found", "--output-spaces"]


def _events_missing(bids: Path) -> tuple[Path, list[str]]:
    events = _events(bids)
    events.unlink()
    return _one(bids, "*run-01_bold.nii.gz"), ["no events.tsv"]


def _edit_events(edit: Callable[[pd.DataFrame], pd.DataFrame], words: list[str]):
    def mutate(bids: Path) -> tuple[Path, list[str]]:
        events = _events(bids)
        table = pd.read_csv(events, sep="\t", dtype=str, keep_default_na=False)
        edit(table).to_csv(events, sep="\t", index=False)
        return events, words
    return mutate


def _non_numeric(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[3, "onset"] = "soon"
    return table


def _late_trial(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[len(table) - 1, "onset"] = "100000"
    return table


def _confounds_missing(bids: Path) -> tuple[Path, list[str]]:
    confounds = _one(bids, "derivatives/fmriprep/sub-01/**/*run-01_desc-confounds_timeseries.tsv")
    confounds.unlink()
    return _one(bids, "*run-01_bold.nii.gz"), ["confounds not found"]


def _tr_mismatch(bids: Path) -> tuple[Path, list[str]]:
    sidecar = _one(bids, "*run-01_bold.json")
    meta = json.loads(sidecar.read_text())
    meta["RepetitionTime"] = 2.0
    sidecar.write_text(json.dumps(meta))
    return _preproc_bold(bids), ["RepetitionTime 2.0", "differs"]


def _stim(value: str, words: list[str]):
    """The message names the stimulus as written in the events file (and the folder it was looked up in)."""
    def mutate(bids: Path) -> tuple[Path, list[str]]:
        events = _events(bids)
        table = pd.read_csv(events, sep="\t", dtype=str, keep_default_na=False)
        table.loc[2, "stim_file"] = value
        table.to_csv(events, sep="\t", index=False)
        return Path(value), [f"'{value}'", *words]
    return mutate


def _mask_off_grid(bids: Path) -> tuple[Path, list[str]]:
    """The brain mask moved by one voxel (same shape, other affine), as a mask of another space would be."""
    mask = _one(bids, "derivatives/fmriprep/sub-01/**/*run-01_*desc-brain_mask.nii.gz")
    img = nib.load(mask)
    affine = img.affine.copy()
    affine[:3, 3] += np.diag(affine)[:3]
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine, img.header), mask)
    return mask, ["differs from the BOLD grid"]


def _stim_symlink_outside(bids: Path) -> tuple[Path, list[str]]:
    """A symlink inside stimuli/ to an image outside the dataset: refused, the target is never read."""
    outside = bids.parent / "outside.png"
    shutil.copyfile(sorted((bids / "stimuli").glob("*.png"))[0], outside)
    (bids / "stimuli" / "escape.png").symlink_to(outside)
    return _stim("escape.png", ["leads outside the dataset"])(bids)


def _stim_not_an_image(bids: Path) -> tuple[Path, list[str]]:
    image = sorted((bids / "stimuli").glob("*.png"))[5]
    image.write_bytes(b"not a PNG at all" * 10)
    return image, ["is not an image Pillow can read"]


def _captions_incomplete(bids: Path) -> tuple[Path, list[str]]:
    captions = bids / "stimuli" / "captions.tsv"
    table = pd.read_csv(captions, sep="\t", dtype=str, keep_default_na=False)
    first = sorted(table["stim_file"].unique())[:3]
    table[~table["stim_file"].isin(first)].to_csv(captions, sep="\t", index=False)
    return captions, ["3 of", "have no caption", first[0], "--generator linear"]


def _captions_missing(bids: Path) -> tuple[Path, list[str]]:
    captions = bids / "stimuli" / "captions.tsv"
    captions.unlink()
    return captions, ["captions table does not exist", "--captions"]


def _few_repeats(bids: Path) -> tuple[Path, list[str]]:
    """No stimulus is shown 50 times (run with ``--test-min-repeats 50``): no test set; the message gives counts."""
    return _events(bids), ["0 stimuli are shown >= 50 times", "--test-min-repeats"]


CASES = {
    "bold-missing": (_bold_missing, 66),
    "bold-truncated": (_truncated_bold, 65),
    "bold-unreadable": (_unreadable_bold, 65),
    "events-missing": (_events_missing, 66),
    "events-no-onset": (_edit_events(lambda t: t.drop(columns="onset"), ["lacks the 'onset' column"]), 65),
    "events-non-numeric-onset": (_edit_events(_non_numeric, ["non-numeric", "'onset'", "line 5"]), 65),
    "trial-after-run-end": (_edit_events(_late_trial, ["ends after the run"]), 65),
    "confounds-missing": (_confounds_missing, 66),
    "tr-mismatch": (_tr_mismatch, 65),
    "stim-file-missing": (_stim("nope.png", ["not found"]), 66),
    "stim-file-parent": (_stim("../dataset_description.json", ["must be a path relative"]), 65),
    "stim-file-absolute": (_stim("/etc/hostname", ["must be a path relative"]), 65),
    "stim-file-symlink-outside": (_stim_symlink_outside, 65),
    "stim-file-not-an-image": (_stim_not_an_image, 65),
    "stimulus-column-absent": (lambda bids: (_events(bids), ["no 'image' column", "--stimulus-column"]), 65),
    "mask-off-grid": (_mask_off_grid, 65),
    "captions-incomplete": (_captions_incomplete, 65),
    "captions-missing": (_captions_missing, 66),
    "too-few-repeats": (_few_repeats, 65),
}
EXTRA_ARGS = {"too-few-repeats": ["--test-min-repeats", "50"], "stimulus-column-absent": ["--stimulus-column", "image"],
              "captions-incomplete": ["--generator", "diffusion"], "captions-missing": ["--generator", "diffusion"]}
#: Found only when the data are read (the GLM stage); every other case stops before any workflow node runs.
FOUND_IN_A_NODE = {"bold-truncated"}


