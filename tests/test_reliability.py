"""Reliability (issue 5): bad input refused cleanly, reproducible results, no network, interrupted runs resume.

Every bad input is built from a copy of the ``tiny`` simulated dataset and run through the command line as a
user would (a subprocess, one participant); the test checks the exit code, that the message names the file
and the problem, and that nothing that looks complete (the participant's report) was written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_recon.bids.derivatives import BIDSIGNORE
from tests.bad_inputs import CASES, EXTRA_ARGS, FMRIPREP, FOUND_IN_A_NODE, _one, _preproc_bold
from tests.conftest import no_network_env, participant_files, run_cli

pytestmark = pytest.mark.slow  # every test here runs the command line in a subprocess


@pytest.fixture
def dataset_copy(tiny_dataset, tmp_path: Path) -> Path:
    """A writable copy of the tiny dataset (raw + fMRIPrep inside it)."""
    bids = tmp_path / "ds"
    shutil.copytree(tiny_dataset.bids_dir, bids)
    return bids


def _participant(bids: Path, out: Path, templateflow: Path, *extra: str):
    return run_cli([str(bids), str(out), "participant", "-d", f"fmriprep={bids / FMRIPREP}",
                    "-w", str(out.parent / "work"), "--participant-label", "01", "--skip-bids-validation",
                    "--nprocs", "2", *extra], templateflow)


@pytest.mark.spread
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused(case: str, dataset_copy: Path, tiny_dataset, tmp_path: Path) -> None:
    mutate, code = CASES[case]
    named, words = mutate(dataset_copy)
    out = tmp_path / "out"
    # --stop-on-first-crash only makes the failing cases fast: errors are mapped the same way without it
    proc = _participant(dataset_copy, out, tiny_dataset.templateflow_dir, "--stop-on-first-crash",
                        *EXTRA_ARGS.get(case, []))
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if case != "too-few-repeats":
        assert named.name in proc.stderr, proc.stderr[-3000:]
    for word in words:
        assert word in proc.stderr, proc.stderr[-3000:]
    assert not (out / "sub-01.html").exists()
    nodes_run = list((out.parent / "work").rglob("result_*.pklz"))
    assert bool(nodes_run) == (case in FOUND_IN_A_NODE), nodes_run[:3]


# --- whole runs: unusable voxels, no network, reproducibility, interrupt and resume ----------------------------

def _command(bids: Path, out: Path, work: Path, subject: str = "01", nprocs: int = 2) -> list[str]:
    return [sys.executable, "-m", "bids_recon", str(bids), str(out), "participant", "-d",
            f"fmriprep={bids / FMRIPREP}", "-w", str(work), "--participant-label", subject, "--skip-bids-validation",
            "--nprocs", str(nprocs)]


@pytest.fixture(scope="module")
def unusable_voxels_dataset(tiny_dataset, tmp_path_factory) -> dict:
    """The tiny dataset with 3 NaN and 3 constant brain voxels in run 1's preprocessed BOLD, and a sandbox.

    The runs' environment disables the network (see :func:`tests.conftest.no_network_env`).
    """
    root = tmp_path_factory.mktemp("reliability")
    bids = root / "ds"
    shutil.copytree(tiny_dataset.bids_dir, bids)
    bold = _preproc_bold(bids)
    img = nib.load(bold)
    data = np.asarray(img.dataobj, dtype=np.float32)
    mask = np.asarray(nib.load(_one(bids, "derivatives/fmriprep/sub-01/**/*run-01_*desc-brain_mask.nii.gz"))
                      .dataobj) > 0
    voxels = np.argwhere(mask)[::97][:6]
    for k, (i, j, z) in enumerate(voxels):
        if k < 3:
            data[i, j, z, 5 * k] = np.nan
        else:
            data[i, j, z, :] = 1000.0
    out_img = nib.Nifti1Image(data, img.affine, img.header)
    out_img.set_data_dtype(np.float32)
    nib.save(out_img, bold)
    env = no_network_env(root / "no_network", TEMPLATEFLOW_HOME=str(tiny_dataset.templateflow_dir))
    return {"root": root, "bids": bids, "env": env, "dataset": tiny_dataset}


def _participant_processes(d: dict, out: Path, root: Path) -> list[subprocess.Popen]:
    """One process per participant (as an HPC array job), one output dir, own work dirs, the network disabled."""
    return [subprocess.Popen(_command(d["bids"], out, root / f"work-{subject}", subject, nprocs=1),
                             env=d["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for subject in d["dataset"].subjects]


@pytest.fixture(scope="module")
def offline_run(unusable_voxels_dataset) -> dict:
    """Both participants at once (one process each, as an HPC array job) into one output dir, the network disabled,
    then the group level: the reference run of the reproducibility check below."""
    d = unusable_voxels_dataset
    root = d["root"] / "a"
    out = root / "out"
    procs = _participant_processes(d, out, root)
    results = [p.communicate(timeout=900) for p in procs]
    group = subprocess.run([sys.executable, "-m", "bids_recon", str(d["bids"]), str(out), "group"], env=d["env"],
                           capture_output=True, text=True, timeout=600)
    return {"out": out, "codes": [p.returncode for p in procs], "stderr": [r[1] for r in results], "group": group}


@pytest.fixture(scope="module")
def resumed_run(unusable_voxels_dataset) -> dict:
    """A run killed with SIGKILL mid-workflow, then rerun with the same work directory."""
    d = unusable_voxels_dataset
    out, work = d["root"] / "b" / "out", d["root"] / "b" / "work"
    command = _command(d["bids"], out, work)
    process = subprocess.Popen(command, env=d["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if len(list(work.rglob("result_*.pklz"))) >= 6:  # some nodes done, the run is well under way
            break
        time.sleep(0.2)
    killed_mid_run = process.poll() is None
    if killed_mid_run:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    left = {"report": (out / "sub-01.html").exists(), "killed_mid_run": killed_mid_run}
    proc = subprocess.run(command, env=d["env"], capture_output=True, text=True, timeout=600)
    return {"out": out, "proc": proc, **left}


def test_network_sandbox_works(unusable_voxels_dataset) -> None:
    code = ("import socket\ntry:\n    socket.socket().connect(('127.0.0.1', 9))\n"
            "except OSError as exc:\n    print(exc)")
    proc = subprocess.run([sys.executable, "-c", code], env=unusable_voxels_dataset["env"], capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == "network access is disabled in this test", proc.stderr


def test_runs_without_network_and_counts_unusable_voxels(offline_run, unusable_voxels_dataset) -> None:
    assert offline_run["codes"] == [0, 0], [e[-3000:] for e in offline_run["stderr"]]
    assert (offline_run["out"] / "sub-01.html").is_file()
    sidecars = sorted((offline_run["out"] / "sub-01").rglob("*ses-01_*stat-rsquare_statmap.json"))
    assert sidecars
    assert json.loads(sidecars[0].read_text())["UnusableVoxels"] == 6
    html = (offline_run["out"] / "sub-01.html").read_text()
    assert "unusable voxels (NaN, constant; betas 0)" in html


def _assert_same_outputs(a: Path, b: Path) -> None:
    """Every file under sub-01/ (betas, maps, tables, decoders, reconstructions, figures) is byte-identical."""
    first, second = participant_files(a), participant_files(b)
    assert first.keys() == second.keys() and len(first) > 20
    assert any(name.endswith("stat-effect_statmap.nii.gz") for name in first)
    assert [name for name in first if first[name] != second[name]] == []


def test_killed_run_resumes_with_identical_outputs(offline_run, resumed_run, unusable_voxels_dataset) -> None:
    """Same seed, other folders, killed and resumed: every output file is bitwise equal.

    This is also the reproducibility check (two runs with the same seed into different output/work folders).
    """
    assert offline_run["codes"][0] == 0, offline_run["stderr"][0][-3000:]
    assert resumed_run["killed_mid_run"], "the run finished before it could be killed"
    assert not resumed_run["report"], "a killed run left a report that looks complete"
    assert resumed_run["proc"].returncode == 0, resumed_run["proc"].stderr[-3000:]
    _assert_same_outputs(offline_run["out"], resumed_run["out"])


def test_participants_in_parallel_share_one_output_dir(offline_run, unusable_voxels_dataset):
    """As an HPC array job does: one process per participant, same output dir, own work dirs (the offline run)."""
    out, subjects = offline_run["out"], unusable_voxels_dataset["dataset"].subjects
    assert offline_run["codes"] == [0] * len(subjects), [e[-2000:] for e in offline_run["stderr"]]
    description = json.loads((out / "dataset_description.json").read_text())  # intact JSON, not interleaved
    assert description["DatasetType"] == "derivative"
    assert (out / ".bidsignore").read_text().splitlines() == BIDSIGNORE
    logs = [p for p in (out / "logs").iterdir() if p.is_dir()]
    assert len(logs) == len(subjects) + 1  # one log folder per process (and the group level's), none shared
    for subject in subjects:
        assert (out / f"sub-{subject}.html").is_file()
    assert offline_run["group"].returncode == 0, offline_run["group"].stderr[-2000:]
