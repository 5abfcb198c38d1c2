"""Every public dataset's layout (``bids_recon-sim --layout``) end to end through the command line with its
``--dataset`` preset and only the paths of the stores outside the BIDS tree; the outputs pass the BIDS validator
and the trial table matches the simulation's ground truth (test set, images that are modelled but not decoded).

One tiny one-subject run per layout (LSA betas, metrics at 64 px), reused by every assert; plus two bad inputs
through the command line (the rest of them are checked in-process in tests/test_checks.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bids_recon.glm.trials import read_trials
from tests.conftest import layout_copy, run_cli, validator_errors

pytestmark = pytest.mark.slow  # each test runs the command line in a subprocess

LAYOUTS = ["nsd", "things", "bold5000", "god", "nod"]
FAST = "[workflow.evaluate]\nimage_size = 64\n"


def _trials(out: Path, subject: str) -> pd.DataFrame:
    return read_trials(next(p for p in (out / f"sub-{subject}").rglob("*_trials.tsv") if "_run-" not in p.name))


@pytest.mark.spread
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_end_to_end(layout, layout_dataset, tmp_path):
    """One run per layout (one test, so that parallel workers never run it twice), every assert on it."""
    import tomllib

    from bids_recon.sim import load_truth

    dataset = layout_dataset(layout)
    (tmp_path / "fast.toml").write_text(FAST)
    out = tmp_path / "out"
    proc = run_cli([str(dataset.bids_dir), str(out), "participant", "-d", f"fmriprep={dataset.fmriprep_dir}",
                    "-w", str(tmp_path / "work"), "--nprocs", "2", "--glm", "lsa", "--config-file",
                    str(tmp_path / "fast.toml"), *dataset.run_args], dataset.templateflow_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, errors = validator_errors(out)
    assert not errors, errors[:5]

    truth = load_truth(dataset.truth_dir, dataset.subjects[0])
    trials, truth_trials = _trials(out, dataset.subjects[0]), truth["trials"]
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
    if layout == "things":  # an events column names the test set: said in the trial table's sidecar
        import json

        sidecar = json.loads(next((out / f"sub-{dataset.subjects[0]}").rglob("*_desc-singletrial_trials.json"))
                             .read_text())
        assert "'trial_type'" in sidecar["Description"] and "'test'" in sidecar["Description"], sidecar
    metrics = pd.read_csv(next((out / f"sub-{dataset.subjects[0]}").rglob("*_metrics.tsv")), sep="\t")
    assert set(metrics.loc[metrics["status"] == "ok", "n"]) == {len(test)}  # computed over the named test set


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
