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
import psutil
import pytest

from bids_recon.bids.derivatives import bidsignore_text
from tests.bad_inputs import CASES, EXTRA_ARGS, FMRIPREP, FOUND_IN_A_NODE, _one, _preproc_bold
from tests.conftest import bids_validator, no_network_env, participant_files, run_cli, validator_errors
from tests.shared import shared

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


#: The bad inputs run through the command line: one for each way a refusal reaches the user (a missing file, 66;
#: bad data found by the preflight, 65; a sidecar in the wrong unit; a file that escapes the dataset; a generator's
#: own input check; bad data found only inside a node). Every case of :data:`tests.bad_inputs.CASES` runs
#: in-process through the same preflight in tests/bids/test_checks.py (2-3 s each through a subprocess, ~1 s there).
COMMAND_LINE_CASES = ("bold-missing", "events-non-numeric-onset", "tr-in-milliseconds", "stim-file-parent",
                      "captions-missing", "bold-truncated")


@pytest.mark.spread
@pytest.mark.parametrize("case", COMMAND_LINE_CASES)
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
    # a run that failed in a node keeps its participant marked incomplete; one refused before any node wrote nothing
    assert (out / "sub-01_INCOMPLETE.txt").is_file() == (case in FOUND_IN_A_NODE)


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
    def build(root: Path) -> dict:
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

    return shared(tmp_path_factory, "unusable_voxels_dataset", build)


def _participant_processes(d: dict, out: Path, root: Path) -> list[subprocess.Popen]:
    """One process per participant (as an HPC array job), one output dir, own work dirs, the network disabled."""
    return [subprocess.Popen(_command(d["bids"], out, root / f"work-{subject}", subject, nprocs=1),
                             env=d["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for subject in d["dataset"].subjects]


@pytest.fixture(scope="module")
def offline_run(unusable_voxels_dataset, tmp_path_factory) -> dict:
    """Both participants at once (one process each, as an HPC array job) into one output dir, the network disabled,
    then the group level: the reference run of the reproducibility check below."""
    d = unusable_voxels_dataset

    def build(root: Path) -> dict:
        out = root / "out"
        procs = _participant_processes(d, out, root)
        results = [p.communicate(timeout=900) for p in procs]
        group = subprocess.run([sys.executable, "-m", "bids_recon", str(d["bids"]), str(out), "group"],
                               env=d["env"], capture_output=True, text=True, timeout=600)
        return {"out": out, "codes": [p.returncode for p in procs], "stderr": [r[1] for r in results],
                "group": group}

    return shared(tmp_path_factory, "offline_run", build)


def _nodes_running(work: Path) -> list[Path]:
    """Node folders whose node has started (``_node.pklz``) and not finished (no ``result_*.pklz``)."""
    return [p.parent for p in work.rglob("_node.pklz") if not any(p.parent.glob("result_*.pklz"))]


def _running_after(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still running after up to ``seconds`` (a zombie is dead: only its parent has not reaped it)."""
    deadline = time.monotonic() + seconds
    while True:
        running = []
        for p in processes:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    running.append(p)
            except psutil.NoSuchProcess:
                pass
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


def _kill(processes: list[psutil.Process]) -> list[str]:
    """Kill processes left running (a failing test must not leave them behind); returns what they were."""
    killed = []
    for process in processes:
        try:
            what = f"{process.pid} {' '.join(process.cmdline()[:4])}"
            process.kill()
        except psutil.NoSuchProcess:
            continue
        killed.append(what)
    return killed


@pytest.fixture(scope="module")
def resumed_run(unusable_voxels_dataset, tmp_path_factory) -> dict:
    """A run killed with ``kill -9`` of its main process mid-workflow (a worker running a node), the group level
    tried then, the run rerun with the same work directory, and the group level again."""
    return shared(tmp_path_factory, "resumed_run", lambda root: _resumed_run(unusable_voxels_dataset, root))


def _resumed_run(d: dict, root: Path) -> dict:
    out, work = root / "out", root / "work"
    command = _command(d["bids"], out, work)
    process = subprocess.Popen(command, env=d["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        # some nodes done, the run well under way, a worker inside a node
        if len(list(work.rglob("result_*.pklz"))) >= 6 and _nodes_running(work):
            break
        time.sleep(0.2)
    killed_mid_run = process.poll() is None
    tree = psutil.Process(process.pid).children(recursive=True) if killed_mid_run else []
    if killed_mid_run:
        os.kill(process.pid, signal.SIGKILL)  # the main process only, as a user's kill -9 PID
    process.wait(timeout=60)
    alive = _kill(_running_after(tree, 5.0))
    left = {"report": (out / "sub-01.html").exists(), "killed_mid_run": killed_mid_run,
            "workers": [p.pid for p in tree], "alive": alive,
            "marker": (out / "sub-01_INCOMPLETE.txt").read_text() if (out / "sub-01_INCOMPLETE.txt").exists() else None}
    left["validator"] = validator_errors(out) if bids_validator() else None  # the marker is in .bidsignore
    group = [sys.executable, "-m", "bids_recon", str(d["bids"]), str(out), "group"]
    refused = subprocess.run(group, env=d["env"], capture_output=True, text=True, timeout=600)
    proc = subprocess.run(command, env=d["env"], capture_output=True, text=True, timeout=600)
    after = subprocess.run(group, env=d["env"], capture_output=True, text=True, timeout=600)
    return {"out": out, "work": work, "proc": proc, "group_refused": refused, "group_after": after, **left}


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


def test_killed_run_leaves_no_process_and_looks_incomplete(resumed_run) -> None:
    """kill -9 of the main process: its workers (and what they started) end within seconds; OUT carries the
    participant's INCOMPLETE marker, which the group level refuses (exit 65) until the rerun completes it."""
    assert resumed_run["killed_mid_run"], "the run finished before it could be killed"
    assert len(resumed_run["workers"]) >= 2, resumed_run["workers"]  # --nprocs 2 workers (and the guard)
    assert resumed_run["alive"] == [], f"processes of the killed run still running: {resumed_run['alive']}"
    marker = resumed_run["marker"]
    assert marker is not None, "a killed run left nothing saying that sub-01 is incomplete"
    assert "INCOMPLETE" in marker and f"-w {resumed_run['work']}" in marker and "bids_recon.log" in marker
    if resumed_run["validator"] is not None:
        code, errors = resumed_run["validator"]
        assert code == 0 and not errors, errors[:5]
    refused = resumed_run["group_refused"]
    assert refused.returncode == 65, refused.stderr[-3000:]
    assert "sub-01" in refused.stderr and f"-w {resumed_run['work']}" in refused.stderr, refused.stderr[-3000:]
    assert resumed_run["proc"].returncode == 0, resumed_run["proc"].stderr[-3000:]
    assert not (resumed_run["out"] / "sub-01_INCOMPLETE.txt").exists()
    assert resumed_run["group_after"].returncode == 0, resumed_run["group_after"].stderr[-3000:]


def test_workers_and_their_processes_die_with_the_main_process(tmp_path: Path) -> None:
    """A node that starts a process (``sleep``) in a GuardedMultiProc worker: kill -9 of the main process ends the
    worker and the process it started."""
    script = tmp_path / "wf.py"
    script.write_text(NODE_STARTS_A_PROCESS)
    main = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "NIPYPE_NO_ET": "1"})
    pids = tmp_path / "pids"
    deadline = time.monotonic() + 120
    while not pids.is_file() and main.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids.is_file(), "the node did not start"
    worker, child = (psutil.Process(int(pid)) for pid in pids.read_text().split())
    assert child.ppid() == worker.pid and worker.pid in [p.pid for p in psutil.Process(main.pid).children()]
    os.kill(main.pid, signal.SIGKILL)
    main.wait(timeout=30)
    alive = _kill(_running_after([worker, child], 5.0))
    assert alive == [], f"still running after the main process was killed: {alive}"


#: A one-node workflow run with bids_recon's MultiProc; the node starts ``sleep`` and writes both pids.
NODE_STARTS_A_PROCESS = """
import sys
from nipype.interfaces.utility import Function
from nipype.pipeline import engine as pe
from bids_recon.workflows.multiproc import register_plugin

def start(folder):
    import os, subprocess, time
    child = subprocess.Popen(["sleep", "120"])
    with open(os.path.join(folder, "pids.tmp"), "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.replace(os.path.join(folder, "pids.tmp"), os.path.join(folder, "pids"))
    time.sleep(120)

wf = pe.Workflow("wf", base_dir=sys.argv[1])
node = pe.Node(Function(input_names=["folder"], function=start), name="node")
node.inputs.folder = sys.argv[1]
wf.add_nodes([node])
wf.run(plugin=register_plugin(), plugin_args={"n_procs": 1})
"""


def test_reports_only_and_group_refuse_an_incomplete_participant(tmp_path: Path) -> None:
    """The marker's check, without a run: ``--reports-only`` and the group level name the participant and the
    work directory to rerun with; other participants are not refused."""
    from types import SimpleNamespace

    from bids_recon.bids.derivatives import incomplete_participants, write_incomplete_marker
    from bids_recon.config import Config
    from bids_recon.errors import BadDataError
    from bids_recon.workflows.group import run_group
    from bids_recon.workflows.participant import rebuild_report

    facts = dict(started="now", run_id="r1", version="x", pid=1, host="h", log="logs/r1/bids_recon.log",
                 work_dir="/scratch/work-02", command="bids_recon ...")
    marker = write_incomplete_marker(tmp_path, "02", **facts)
    assert marker.name == "sub-02_INCOMPLETE.txt" and "-w /scratch/work-02" in marker.read_text()
    assert incomplete_participants(tmp_path) == {"02": marker}
    assert incomplete_participants(tmp_path, ["sub-01"]) == {}
    config = Config()
    config.execution.output_dir = str(tmp_path)
    with pytest.raises(BadDataError, match=r"--reports-only refuses sub-02.*-w /scratch/work-02") as refused:
        rebuild_report(config, SimpleNamespace(subject="02", task="images"))
    assert refused.value.exit_code == 65
    with pytest.raises(BadDataError, match=r"the group level refuses sub-02"):
        run_group(config)


def test_participants_in_parallel_share_one_output_dir(offline_run, unusable_voxels_dataset):
    """As an HPC array job does: one process per participant, same output dir, own work dirs (the offline run)."""
    out, subjects = offline_run["out"], unusable_voxels_dataset["dataset"].subjects
    assert offline_run["codes"] == [0] * len(subjects), [e[-2000:] for e in offline_run["stderr"]]
    description = json.loads((out / "dataset_description.json").read_text())  # intact JSON, not interleaved
    assert description["DatasetType"] == "derivative"
    assert (out / ".bidsignore").read_text() == bidsignore_text()
    logs = [p for p in (out / "logs").iterdir() if p.is_dir()]
    assert len(logs) == len(subjects) + 1  # one log folder per process (and the group level's), none shared
    for subject in subjects:
        assert (out / f"sub-{subject}.html").is_file()
    assert offline_run["group"].returncode == 0, offline_run["group"].stderr[-2000:]
