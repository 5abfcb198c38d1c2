"""Every public dataset's layout (``bids_recon-sim --layout``) end to end through the command line, running the
command of its recipe page (``docs/datasets/<layout>.md``) as written, with the simulated copy's paths in place
of ``/data/...``: the preset alone finds what the dataset ships (GOD's per-hemisphere masks, NSD's MNI ROIs), and
where the user must supply something (THINGS', NOD's ROI masks) the command has the flag. The outputs pass the BIDS
validator, the trial table matches the simulation's ground truth (test set, images that are modelled but not
decoded) and each ROI is the dataset's masks (their union) with a sidecar naming the files.

One tiny one-subject run per layout (LSA betas, metrics at 64 px: speed only), reused by every assert; plus two bad
inputs through the command line (the rest of them are checked in-process in tests/bids/test_checks.py and
tests/rois/test_rois.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_recon.design import read_trials
from tests import ROOT
from tests.conftest import layout_copy, run_cli, validator_errors

pytestmark = pytest.mark.slow  # each test runs the command line in a subprocess

LAYOUTS = ["nsd", "things", "bold5000", "god", "nod"]
FAST = "[workflow.evaluate]\nimage_size = 64\n"
DOCS = ROOT / "docs" / "datasets"


def recipe_commands(page: Path) -> list[list[str]]:
    """Every ``bids_recon`` command in a documentation page's bash blocks, split into arguments (without the
    program's name)."""
    import shlex

    found = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("bids_recon "):
                found.append(shlex.split(line)[1:])
    return found


def _placeholders(layout: str, dataset, out: Path, tmp_path: Path) -> dict[str, Path]:
    """The recipe page's ``/data/...`` paths -> the simulated copy's."""
    bids, fmriprep = dataset.bids_dir, dataset.fmriprep_dir
    stores = dataset.stores_dir or bids.parent  # NSD keeps everything under its download root
    return {
        "nsd": {"/data/NSD/nsddata_rawdata": bids, "/data/NSD/bids_recon": out, "/data/NSD/fmriprep": fmriprep},
        "things": {"/data/ds004192": bids, "/data/things_out": out, "/data/things_fmriprep": fmriprep,
                   "/data/THINGS/images": stores / "THINGS" / "images", "/data/things_rois": stores / "rois"},
        "bold5000": {"/data/ds001499": bids, "/data/bold5000_out": out, "/data/BOLD5000_Stimuli": stores /
                     "BOLD5000_Stimuli", "/data/coco/annotations": stores / "annotations",
                     "/data/synset_words.txt": stores / "synset_words.txt"},
        "god": {"/data/ds001246": bids, "/data/god_out": out, "/data/god_fmriprep": fmriprep,
                "/data/imagenet_god": stores / "imagenet", "/data/synset_words.txt": stores / "synset_words.txt"},
        "nod": {"/data/ds004496": bids, "/data/nod_out": out, "/data/coco/train2017": stores / "coco" / "train2017",
                "/data/coco/val2017": tmp_path / "val2017", "/data/coco/annotations": stores / "coco" / "annotations",
                "/data/nod_rois": stores / "rois"},
    }[layout]


def recipe_args(layout: str, dataset, out: Path, tmp_path: Path) -> list[str]:
    """The recipe's command of our GLM on fMRIPrep's outputs (``-d fmriprep=``), on the simulated copy."""
    command = next(c for c in recipe_commands(DOCS / f"{layout}.md") if any("fmriprep=" in a for a in c))
    places = sorted(_placeholders(layout, dataset, out, tmp_path).items(), key=lambda kv: -len(kv[0]))
    args = []
    for arg in command:
        for placeholder, path in places:
            if placeholder in arg:
                arg = arg.replace(placeholder, str(path), 1)
                break
        assert "/data/" not in arg, f"{layout}.md: no simulated path for {arg}"
        args.append(arg)
    return args


def _trials(out: Path, subject: str) -> pd.DataFrame:
    return read_trials(next(p for p in (out / f"sub-{subject}").rglob("*_trials.tsv") if "_run-" not in p.name))


def _expected_rois(dataset, brain: np.ndarray) -> dict[str, np.ndarray]:
    """The simulated visual areas (the default ROIs' atlas labels) inside the brain mask: what every layout's masks
    were cut from, so their union must give them back."""
    from bids_recon.rois import DEFAULT_ROI_LABELS, masks_from_atlas
    from bids_recon.rois.atlas import load_label_table

    tf = dataset.templateflow_dir
    atlas = np.asarray(nib.load(next(tf.rglob("*atlas-HOCPA*_dseg.nii.gz"))).dataobj)
    labels = load_label_table(next(tf.rglob("*atlas-HOCPA_dseg.tsv")))
    return {name: mask & brain for name, mask in masks_from_atlas(atlas, labels, {
        k: list(v) for k, v in DEFAULT_ROI_LABELS.items()}).items()}


#: Files each ROI is the union of, per layout (GOD: V1-V3 dorsal/ventral x 2 hemispheres; HVC x 2).
ROI_FILES = {"nsd": (1, 1), "things": (1, 1), "bold5000": (2, 4), "god": (12, 2), "nod": (1, 1)}


@pytest.mark.spread
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_end_to_end(layout, layout_dataset, tmp_path):
    """One run per layout (one test, so that parallel workers never run it twice), every assert on it."""
    import hashlib
    import json
    import tomllib

    from bids_recon.sim import load_truth

    dataset = layout_dataset(layout)
    (tmp_path / "fast.toml").write_text(FAST)
    (tmp_path / "val2017").mkdir()
    out = tmp_path / "out"
    proc = run_cli([*recipe_args(layout, dataset, out, tmp_path), "-w", str(tmp_path / "work"), "--nprocs", "2",
                    "--glm", "lsa", "--config-file", str(tmp_path / "fast.toml")], dataset.templateflow_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, errors = validator_errors(out)
    assert not errors, errors[:5]

    subject = dataset.subjects[0]
    truth = load_truth(dataset.truth_dir, subject)
    trials, truth_trials = _trials(out, subject), truth["trials"]
    kind = truth_trials["kind"] if "kind" in truth_trials else pd.Series("train", index=truth_trials.index)
    decoded = truth_trials[~kind.isin(["catch", "repeat"])]
    assert len(trials) == len(decoded)  # catch images and one-back repeats are modelled, never decoded
    assert sorted(trials["stim_id"].unique()) == sorted(decoded["stim_file"].astype(str).unique())
    test = set(truth["stimuli"].loc[truth["stimuli"]["split"] == "test", "stim_file"].astype(str))
    assert set(trials.loc[trials["split"] == "test", "stim_id"]) == test  # the dataset's own test rule
    if layout in ("god", "nod"):  # a test session
        assert set(trials.loc[trials["split"] == "test", "session"]) == {"perceptionTest01" if layout == "god"
                                                                         else "coco"}
    saved = tomllib.loads(next((out / "logs").rglob("bids_recon.toml")).read_text())
    assert saved["execution"]["dataset"] == layout  # the preset, and the values it set, are recorded
    if layout == "nsd":
        assert saved["execution"]["task_id"] == "nsdcore" and saved["workflow"]["stimuli"]["resolver"] == "nsd"
        assert saved["workflow"]["stimuli"]["test_split"] == "shared1000"
        assert saved["workflow"]["space"] == "MNI152NLin6Asym"  # found: the space of NSD's MNI ROIs
    if layout == "god":  # found: the T1w BOLD of the dataset's masks, and the masks, by the preset alone
        assert saved["workflow"]["space"] == "T1w" and len(saved["workflow"]["rois"]["user_masks"]["earlyvisual"]) == 12
    if layout == "things":  # an events column names the test set: said in the trial table's sidecar
        sidecar = json.loads(next((out / f"sub-{subject}").rglob("*_desc-singletrial_trials.json")).read_text())
        assert "'trial_type'" in sidecar["Description"] and "'test'" in sidecar["Description"], sidecar
    metrics = pd.read_csv(next((out / f"sub-{subject}").rglob("*_metrics.tsv")), sep="\t")
    assert set(metrics.loc[metrics["status"] == "ok", "n"]) == {len(test)}  # computed over the named test set

    # the ROIs are the dataset's masks (the union of their files), resampled to the BOLD grid, with their source
    brain = np.asarray(nib.load(next((out / f"sub-{subject}").rglob("*_desc-brain_mask.nii.gz"))).dataobj) > 0
    log = next((out / "logs").rglob("bids_recon.log")).read_text()
    for (name, expected), n_files in zip(_expected_rois(dataset, brain).items(), ROI_FILES[layout], strict=True):
        path = next((out / f"sub-{subject}").rglob(f"*_label-{name}_mask.nii.gz"))
        assert (np.asarray(nib.load(path).dataobj) > 0).tolist() == expected.tolist(), name
        info = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        assert "Atlas" not in info and "Template" not in info and info["Voxels"] == int(expected.sum()), info
        assert len(info["Files"]) == n_files and info["Union"] == (n_files > 1), info
        for entry in info["Files"]:
            source = entry["Source"]
            file = (dataset.bids_dir / source.removeprefix("bids:raw:") if source.startswith("bids:raw:") else
                    Path(source.removeprefix("file://")))
            assert entry["Sha256"] == hashlib.sha256(file.read_bytes()).hexdigest(), entry
        if layout in ("god", "bold5000"):  # the masks ship inside the raw dataset: BIDS URIs
            assert all(s.startswith("bids:raw:") for s in info["Sources"]), info
        assert f"ROI {name}: " + (f"union of {n_files} files" if n_files > 1 else "") in log
        report = (out / f"sub-{subject}.html").read_text()
        assert ("union of " if n_files > 1 else "") + Path(info["Files"][0]["Source"]).name in report


@pytest.mark.spread
@pytest.mark.parametrize("case", ["nsd-id-beyond-hdf5", "things-fmriprep-sidecar-tr"])
def test_layout_bad_input_through_the_command_line(case, layout_dataset, tmp_path):
    from bids_recon.sim.layouts import get_layout
    from tests.bad_inputs import LAYOUT_CASES

    layout, mutate, code, extra = LAYOUT_CASES[case]
    dataset = layout_dataset(layout)
    bids, stores = layout_copy(dataset, tmp_path / "ds")
    named, words = mutate(bids, stores)
    proc = run_cli([str(bids), str(tmp_path / "out"), "participant", "-d", f"fmriprep={bids / 'derivatives/fmriprep'}",
                    "-w", str(tmp_path / "work"), *get_layout(layout).run_args(bids, stores), *extra],
                   dataset.templateflow_dir)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert named.name in proc.stderr and all(w in proc.stderr for w in words), proc.stderr[-2000:]
    assert not (tmp_path / "work").exists()  # stopped before any node


def test_sim_cli_writes_a_layout(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bids_recon.sim", str(tmp_path / "ds"), "--layout", "things",
                           "--subjects", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--dataset things --stimuli-dir" in proc.stdout
    assert (tmp_path / "ds_stimuli" / "THINGS" / "images").is_dir()
