"""hpc/submit.sh on one machine: a stand-in ``sbatch`` runs the array's tasks and the dependent group job locally.

The stand-ins (tests/hpc_standins.py) go first on PATH. The fast tests replace the container with a stand-in
``apptainer`` that records each call (participant labels, times, binds); the slow test runs the real bids_recon
(the host's installation) behind the stand-in ``apptainer`` on the ``tiny`` dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
try:
    import hpc_standins
finally:
    sys.path.pop(0)


def _wait_for_jobs(slurm_dir: Path, n_jobs: int, timeout: float) -> dict[int, str]:
    """Every submitted job's final state, once all have one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = sorted((slurm_dir / "jobs").glob("*")) if (slurm_dir / "jobs").exists() else []
        if len(jobs) == n_jobs and all((j / "state").exists() for j in jobs):
            return {int(j.name): (j / "state").read_text().strip() for j in jobs}
        time.sleep(0.1)
    raise AssertionError(f"jobs not finished after {timeout} s: {list((slurm_dir / 'jobs').glob('*/*'))}")


def _submit(tmp_path: Path, labels: list[str], extra_env: dict[str, str] | None = None):
    """Run hpc/submit.sh in tmp_path/submit with the stand-ins first on PATH; return (env, its stdout)."""
    bin_dir = hpc_standins.install(tmp_path / "bin")
    submit_dir = tmp_path / "submit"
    submit_dir.mkdir()
    (submit_dir / "participants.txt").write_text("".join(f"{label}\n" for label in labels))
    for name in ("ds", "fmriprep", "out"):
        (tmp_path / name).mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()  # nothing of a real SLURM job or of the scripts' settings
           if not k.startswith("SLURM_") and k not in ("CUDA_VISIBLE_DEVICES", "CACHE_DIR", "MODEL_DIR")}
    env.update({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                "FAKE_SLURM_DIR": str(tmp_path / "slurm"), "FAKE_APPTAINER_LOG": str(tmp_path / "apptainer.jsonl"),
                "BIDS_DIR": str(tmp_path / "ds"), "FMRIPREP_DIR": str(tmp_path / "fmriprep"),
                "OUT_DIR": str(tmp_path / "out"), "IMAGE": str(tmp_path / "bids_recon.sif"), **(extra_env or {})})
    done = subprocess.run(["bash", str(ROOT / "hpc/submit.sh"), "participants.txt"], cwd=submit_dir, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return env, done.stdout


def _records(tmp_path: Path) -> list[dict]:
    log = tmp_path / "apptainer.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_array_then_group_after_every_participant(tmp_path):
    labels = ["01", "02", "03", "04"]
    _, stdout = _submit(tmp_path, labels, {"FAKE_APPTAINER_SECONDS": "1.0"})
    states = _wait_for_jobs(tmp_path / "slurm", 2, timeout=60)
    array_job, group_job = sorted(states)
    assert states == {array_job: "COMPLETED", group_job: "COMPLETED"}
    assert f"afterok:{array_job}" in stdout
    submitted = json.loads((tmp_path / "slurm/jobs" / str(group_job) / "job.json").read_text())
    assert submitted["dependencies"] == [array_job] and submitted["tasks"] is None
    assert json.loads((tmp_path / "slurm/jobs" / str(array_job) / "job.json").read_text())["tasks"] == [1, 2, 3, 4]

    records = _records(tmp_path)
    participants = [r for r in records if r["level"] == "participant"]
    groups = [r for r in records if r["level"] == "group"]
    # each participant ran exactly once, in its own task, with the labels of participants.txt in order
    assert sorted(label for r in participants for label in r["labels"]) == labels
    assert all(len(r["labels"]) == 1 for r in participants)
    assert {r["slurm"]["SLURM_ARRAY_TASK_ID"]: r["labels"][0] for r in participants} == \
        {str(i): label for i, label in enumerate(labels, 1)}
    assert {r["slurm"]["SLURM_ARRAY_JOB_ID"] for r in participants} == {str(array_job)}
    # the tasks ran side by side (an array), and the group once, after all of them had ended
    assert max(r["start"] for r in participants) < min(r["end"] for r in participants)
    assert len(groups) == 1
    assert groups[0]["start"] >= max(r["end"] for r in participants)
    assert groups[0]["present_at_start"] == [f"sub-{label}.done" for label in labels]
    assert (tmp_path / "out/group.done").exists()

    # what the container got: the participant's arguments, resources from SLURM, the binds, a clean environment
    first = next(r for r in participants if r["labels"] == ["01"])
    args = first["args"]
    assert args[:3] == ["/data", "/out", "participant"] and args[args.index("--nprocs") + 1] == "4"
    assert args[args.index("--mem") + 1] == "8" and args[args.index("-w") + 1] == "/work"
    assert "--cleanenv" in first["flags"] and "--nv" not in first["flags"]
    binds = {container: (host, mode) for host, container, mode in first["binds"]}
    assert binds["/data"] == (str(tmp_path / "ds"), "ro") and binds["/fmriprep"] == (str(tmp_path / "fmriprep"), "ro")
    assert binds["/out"][0] == str(tmp_path / "out") and binds["/work"][1] == "rw"
    assert groups[0]["args"] == ["/data", "/out", "group"]
    # node-local scratch (TMPDIR of the task) holds the work directory, and is removed at the end of the task
    assert binds["/work"][0].startswith(str(tmp_path / "slurm/jobs")) and not Path(binds["/work"][0]).exists()

    exit_codes = (tmp_path / "submit/logs/bids_recon_exit_codes.tsv").read_text().splitlines()
    assert len(exit_codes) == len(labels) + 1 and all("\texit 0\t" in line for line in exit_codes)
    assert exit_codes[-1].split("\t")[1] == "group"
    assert sorted((tmp_path / "submit/logs").glob(f"bids_recon_{array_job}_*.out")) and \
        (tmp_path / f"submit/logs/bids_recon_group_{group_job}.out").exists()


def test_group_does_not_run_when_a_participant_fails(tmp_path):
    _submit(tmp_path, ["01", "02", "03"], {"FAKE_APPTAINER_FAIL_LABEL": "02", "FAKE_APPTAINER_SECONDS": "0.2"})
    states = _wait_for_jobs(tmp_path / "slurm", 2, timeout=60)
    array_job, group_job = sorted(states)
    assert states == {array_job: "FAILED", group_job: "DependencyNeverSatisfied"}
    assert sorted(label for r in _records(tmp_path) for label in r["labels"]) == ["01", "02", "03"]
    assert not [r for r in _records(tmp_path) if r["level"] == "group"]
    lines = (tmp_path / "submit/logs/bids_recon_exit_codes.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[3] for line in lines) == ["exit 0", "exit 0", "exit 65"]


def test_cache_and_model_folders_are_bound_read_only(tmp_path):
    cache, model = tmp_path / "cache", tmp_path / "sd14"
    cache.mkdir()
    model.mkdir()
    (cache / "bids_recon.env").write_text("TEMPLATEFLOW_HOME=/cache/templateflow\nHF_HOME=/cache/huggingface\n")
    _submit(tmp_path, ["01"], {"CACHE_DIR": str(cache), "MODEL_DIR": str(model), "FAKE_APPTAINER_SECONDS": "0",
                               "SLURM_JOB_GPUS": "0"})
    _wait_for_jobs(tmp_path / "slurm", 2, timeout=60)
    participant = next(r for r in _records(tmp_path) if r["level"] == "participant")
    binds = {container: (host, mode) for host, container, mode in participant["binds"]}
    assert binds["/cache"] == (str(cache), "ro")
    assert binds["/opt/models/stable-diffusion-v1-4"] == (str(model), "ro")
    assert participant["env"] == {"TEMPLATEFLOW_HOME": "/cache/templateflow", "HF_HOME": "/cache/huggingface"}
    assert "--nv" in participant["flags"]  # a GPU in the job: the driver is made visible


def test_submit_needs_a_participants_file(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "hpc/submit.sh"), str(tmp_path / "missing.txt")], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 64 and "participants.txt" in done.stderr


@pytest.mark.slow
def test_submit_runs_the_real_bids_recon(tiny_dataset, tmp_path):
    """The real bids_recon (this installation) behind the stand-in apptainer: both participants, then the group."""
    ds = tmp_path / "ds"
    shutil.copytree(tiny_dataset.bids_dir, ds, symlinks=True)
    labels = sorted(p.name[4:] for p in ds.glob("sub-*") if p.is_dir())
    assert len(labels) >= 2
    bids_recon = Path(sys.executable).with_name("bids_recon")
    env, _ = _submit(tmp_path, labels, {"FAKE_APPTAINER_MODE": "exec", "FAKE_BIDS_RECON": str(bids_recon),
                                        "FMRIPREP_DIR": str(ds / "derivatives/fmriprep"), "BIDS_DIR": str(ds),
                                        "FAKE_IMAGE_TEMPLATEFLOW_HOME": str(tiny_dataset.templateflow_dir)})
    states = _wait_for_jobs(tmp_path / "slurm", 2, timeout=600)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((tmp_path / "submit/logs").glob("*.out")))
    assert sorted(states.values()) == ["COMPLETED", "COMPLETED"], logs
    out = tmp_path / "out"
    for label in labels:
        assert (out / f"sub-{label}.html").exists(), logs
    assert (out / "group.html").exists() and list((out / "group").glob("*_metrics.tsv")), logs
    group_html = (out / "group.html").stat().st_mtime
    assert all(group_html >= (out / f"sub-{label}.html").stat().st_mtime for label in labels)
