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


def _trial_duration_na(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[2, "duration"] = "n/a"  # BIDS allows n/a ("unavailable"), but a trial's regressor needs a duration
    return table


def _tr_in_milliseconds(bids: Path) -> tuple[Path, list[str]]:
    sidecar = _one(bids, "*run-01_bold.json")
    data = json.loads(sidecar.read_text())
    seconds = data["RepetitionTime"]
    data["RepetitionTime"] = seconds * 1000
    sidecar.write_text(json.dumps(data))
    return sidecar, ["looks like milliseconds", "BIDS wants seconds", f'"RepetitionTime": {seconds:g}']


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
    "trial-duration-na": (_edit_events(_trial_duration_na, ["duration n/a", "onset"]), 65),
    "tr-in-milliseconds": (_tr_in_milliseconds, 65),
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




# --------------------------------------------------------------------------------------------------------------------
# bad inputs of the public datasets' layouts (bids_recon-sim --layout): each case mutates a copy of the layout's
# tiny one-subject dataset; ``bids`` is the raw dataset, ``stores`` what it keeps outside (OUT_stimuli; NSD: the
# download root beside nsddata_rawdata).


def _layout_events(bids: Path) -> Path:
    return sorted(bids.glob("sub-*/ses-*/func/*run-01_events.tsv"))[0]


def _nsd_id_beyond_rows(bids: Path, stores: Path) -> tuple[Path, list[str]]:
    events = _layout_events(bids)
    table = pd.read_csv(events, sep="\t", dtype=str, keep_default_na=False)
    import h5py

    with h5py.File(bids.parent / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5") as handle:
        rows = handle["imgBrick"].shape[0]
    table.loc[4, "73k_id"] = str(rows + 1)
    table.to_csv(events, sep="\t", index=False)
    return Path("nsd_stimuli.hdf5"), [f"73k id {rows + 1} is beyond the {rows} images", events.name, "line 6",
                                      f"73k_id '{rows + 1}'"]


def _god_image_missing(bids: Path, stores: Path) -> tuple[Path, list[str]]:
    events = _layout_events(bids)
    name = pd.read_csv(events, sep="\t")["stimulus_name"].dropna().iloc[3]
    (stores / "imagenet" / f"{name}.JPEG").unlink()
    return Path("imagenet"), [f"'{name}' not found", events.name, "stimulus_name"]


def _things_not_an_image(bids: Path, stores: Path) -> tuple[Path, list[str]]:
    events = _layout_events(bids)
    table = pd.read_csv(events, sep="\t")
    name = table.loc[table["trial_type"] == "exp", "file_path"].iloc[0]
    (stores / "THINGS" / "images" / name).write_bytes(b"GIF89a but not really")
    return Path(name), ["is not an image Pillow can read", events.name, f"file_path '{name}'"]


def _nsd_coco_id_without_caption(bids: Path, stores: Path) -> tuple[Path, list[str]]:
    info = pd.read_csv(bids.parent / "nsddata" / "experiments" / "nsd" / "nsd_stim_info_merged.csv", index_col=0)
    shown = pd.read_csv(_layout_events(bids), sep="\t")["73k_id"].iloc[0]
    coco, split = info.loc[info["nsdId"] == shown - 1, ["cocoId", "cocoSplit"]].iloc[0]
    path = bids.parent / "nsddata_stimuli" / "stimuli" / "nsd" / "annotations" / f"captions_{split}.json"
    data = json.loads(path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != coco]
    path.write_text(json.dumps(data))
    return Path("annotations"), ["have no caption", f"'{shown}' (COCO id {coco})"]


def _god_without_stimulus_columns(bids: Path, stores: Path) -> tuple[Path, list[str]]:
    events = _layout_events(bids)
    pd.read_csv(events, sep="\t", dtype=str, keep_default_na=False).drop(
        columns=["stimulus_name", "stimulus_id"]).to_csv(events, sep="\t", index=False)
    return events, ["no column 'stimulus_name' or 'stimulus_id'", "--stimulus-column"]


def _things_rule_selects_nothing(bids: Path, stores: Path) -> tuple[Path, list[str]]:
    return _layout_events(bids), ["--test-split trial_type=tset selects no test trial",
                                  "values there: catch, exp, test"]


def _things_fmriprep_tr(bids: Path, stores: Path) -> tuple[Path, list[str]]:
    sidecar = sorted((bids / FMRIPREP).rglob("*run-1_space-T1w_desc-preproc_bold.json"))[0]
    meta = json.loads(sidecar.read_text())
    meta["RepetitionTime"] = 2.0
    sidecar.write_text(json.dumps(meta))
    return Path(sidecar.name.replace(".json", ".nii.gz")), ["RepetitionTime 1.5 s in the raw sidecar",
                                                           "differs from 2.0 s in the fMRIPrep sidecar"]


def _bold5000_header_tr(bids: Path, stores: Path) -> tuple[Path, list[str]]:
    bold = sorted((bids / FMRIPREP).rglob("*run-01_bold_space-T1w_preproc.nii.gz"))[0]
    img = nib.load(bold)
    img.header.set_zooms((*img.header.get_zooms()[:3], 2.5))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header), bold)
    return bold, ["RepetitionTime 1.5 s", "differs from 2.5 s in the NIfTI header"]


#: case -> (layout, mutate(bids, stores), exit code, extra flags); the layout's own run flags are added.
LAYOUT_CASES = {
    "nsd-id-beyond-hdf5": ("nsd", _nsd_id_beyond_rows, 65, []),
    "god-image-missing": ("god", _god_image_missing, 66, []),
    "things-not-an-image": ("things", _things_not_an_image, 65, []),
    "nsd-coco-id-without-caption": ("nsd", _nsd_coco_id_without_caption, 65, ["--generator", "diffusion"]),
    "god-events-without-preset-column": ("god", _god_without_stimulus_columns, 65, []),
    "things-test-rule-selects-nothing": ("things", _things_rule_selects_nothing, 65, ["--test-split",
                                                                                    "trial_type=tset"]),
    "things-fmriprep-sidecar-tr": ("things", _things_fmriprep_tr, 65, []),
    "bold5000-header-tr": ("bold5000", _bold5000_header_tr, 65, []),
}


# -- imported betas (--betas): each case mutates a copy of a layout's files; the message must name both files -----


def _nsd_betas_dir(root: Path) -> Path:
    return root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"


def _nsd_responses(root: Path) -> Path:
    return root / "nsddata" / "ppdata" / "subj01" / "behav" / "responses.tsv"


def _nsd_trial_the_betas_lack(bids: Path, stores: Path) -> tuple[Path, str, list[str]]:
    responses = _nsd_responses(stores)
    table = pd.read_csv(responses, sep="\t")
    n = len(table)
    extra = table.iloc[[-1]].assign(TRIAL=table["TRIAL"].iloc[-1] + 1)  # one more trial at the end of the session
    pd.concat([table, extra]).to_csv(responses, sep="\t", index=False)
    return _nsd_betas_dir(stores) / "betas_session01.nii.gz", "responses.tsv", [f"holds {n} trials", f"lists {n + 1}"]


def _nsd_session_missing(bids: Path, stores: Path) -> tuple[Path, str, list[str]]:
    folder, responses = _nsd_betas_dir(stores), _nsd_responses(stores)
    table = pd.read_csv(responses, sep="\t")
    for k in (2, 3):
        shutil.copy(folder / "betas_session01.nii.gz", folder / f"betas_session{k:02d}.nii.gz")
    pd.concat([table.assign(SESSION=k) for k in (1, 2, 3)]).to_csv(responses, sep="\t", index=False)
    (stores / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat").unlink()
    (folder / "betas_session02.nii.gz").unlink()
    return folder / "betas_session02.nii.gz", "betas_session03.nii.gz", ["session 2 is missing from the series",
                                                                          "responses.tsv"]


def _nsd_roi_in_another_space(bids: Path, stores: Path) -> tuple[Path, str, list[str]]:
    streams = stores / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "roi" / "streams.nii.gz"
    img = nib.load(streams)
    affine = img.affine.copy()
    affine[:3, 3] += 400.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), streams)
    return streams, "betas_session01.nii.gz", ["differs from the betas' grid", "another space"]


def _bold5000_image_names_the_betas_lack(bids: Path, stores: Path) -> tuple[Path, str, list[str]]:
    names = next((stores / "BOLD5000_GLMsingle_betas").glob("*_imgnames.txt"))
    n = len(names.read_text().splitlines())
    names.write_text(names.read_text() + "kitchen999.jpg\n")
    return names, "CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-01.nii.gz", [f"{n + 1} image names", f"{n} trials"]


def _bold5000_integer_betas(bids: Path, stores: Path) -> tuple[Path, str, list[str]]:
    betas = next((stores / "BOLD5000_GLMsingle_betas").glob("*_ses-01.nii.gz"))
    img = nib.load(betas)
    nib.save(nib.Nifti1Image(np.rint(np.asarray(img.dataobj) * 300).astype(np.int16), img.affine), betas)
    return betas, "int16", ["median |value|", "scale=1/300"]


def _things_conditions_mismatch(bids: Path, stores: Path) -> tuple[Path, str, list[str]]:
    conditions = sorted((bids / "derivatives" / "betas_vol").rglob("*run-01_conditions.tsv"))[0]
    table = pd.read_csv(conditions, sep="\t")
    table.iloc[:-1].to_csv(conditions, sep="\t", index=False)
    return conditions, "run-01_betas.nii.gz", [f"holds {len(table)} trials", f"names {len(table) - 1}"]


def _glmsingle_events_mismatch(bids: Path, stores: Path) -> tuple[Path, str, list[str]]:
    events = _events(bids)
    table = pd.read_csv(events, sep="\t", keep_default_na=False)
    table.iloc[:-1].to_csv(events, sep="\t", index=False)
    fit = bids / "derivatives" / "GLMsingle" / "sub-01" / "TYPED_FITHRF_GLMDENOISE_RR.npy"
    return fit, events.name, ["trials the betas lack, or the reverse"]


def _import_flags(layout: str, bids: Path, stores: Path) -> list[str]:
    """The flags that import a layout's betas (the NSD preset finds them itself from NSD's root; THINGS' and
    BOLD5000's betas are in T1w, where the atlas does not apply: their ROI masks are given)."""
    from bids_recon.sim.layouts import user_roi_args
    from bids_recon.sim.layouts.bold5000 import spm_mask_args

    return {
        "nsd": ["--dataset", "nsd"],
        "bold5000": ["--dataset", "bold5000", "--betas", f"bold5000={stores / 'BOLD5000_GLMsingle_betas'}",
                     "--stimuli-dir", str(stores / "BOLD5000_Stimuli" / "Scene_Stimuli" / "Presented_Stimuli"),
                     *spm_mask_args(bids)],
        "things": ["--dataset", "things", "--betas", f"things={bids / 'derivatives'}", "--stimuli-dir",
                   str(stores / "THINGS" / "images"), *user_roi_args(stores / "rois")],
        "bids": ["--betas", f"glmsingle={bids / 'derivatives' / 'GLMsingle'}"],
    }[layout]


def import_root(layout: str, bids: Path, stores: Path) -> Path:
    """The dataset folder an import runs on: NSD's download root, else the raw dataset."""
    return stores if layout == "nsd" else bids


#: name -> (layout, mutate(bids, stores) -> (file named, other file named, words)); every one is exit 65.
IMPORT_CASES = {
    "nsd-trial-the-betas-lack": ("nsd", _nsd_trial_the_betas_lack),
    "nsd-session-missing-from-the-series": ("nsd", _nsd_session_missing),
    "nsd-roi-in-another-space": ("nsd", _nsd_roi_in_another_space),
    "bold5000-image-names-the-betas-lack": ("bold5000", _bold5000_image_names_the_betas_lack),
    "bold5000-integer-betas": ("bold5000", _bold5000_integer_betas),
    "things-conditions-the-betas-lack": ("things", _things_conditions_mismatch),
    "glmsingle-events-the-betas-lack": ("bids", _glmsingle_events_mismatch),
}
