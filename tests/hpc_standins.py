"""Stand-ins for SLURM's ``sbatch`` and for ``apptainer``, to run hpc/submit.sh on one machine (tests/test_hpc.py).

:func:`install` writes ``sbatch`` and ``apptainer`` into a folder to put first on PATH; each runs this file.

``sbatch`` [--parsable] [--array=SPEC] [--dependency=afterok:ID[:ID...]] [other options] SCRIPT [ARGS...]
    Prints a new job id and returns at once, like SLURM. A detached supervisor process then waits for the
    ``afterok`` jobs (a job whose dependency ended with an error is never run: its state becomes
    ``DependencyNeverSatisfied``, as SLURM leaves such a job pending), and runs the script in the submitting
    folder, every array task at the same time, each with SLURM_JOB_ID, SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID,
    SLURM_ARRAY_TASK_COUNT, SLURM_CPUS_PER_TASK, SLURM_MEM_PER_NODE (MB), SLURM_SUBMIT_DIR and a per-task TMPDIR
    set, and its output in the script's ``#SBATCH --output`` pattern (%A, %a, %j). Options come from the command
    line, then the script's ``#SBATCH`` lines. State: ``$FAKE_SLURM_DIR/jobs/<id>/`` (``job.json``, ``state``:
    COMPLETED, FAILED or DependencyNeverSatisfied; ``task-<n>.exit``).

``apptainer run`` [--nv] [--cleanenv] [--home DIR] [-B HOST:CONTAINER[:ro]] [--env-file F] [--env K=V] IMAGE ARGS...
    ``$FAKE_APPTAINER_MODE=record`` (default): appends one JSON line (analysis level, participant labels, start
    and end times, binds, the participant outputs present at the start) to ``$FAKE_APPTAINER_LOG`` and writes a
    marker file into the folder bound at /out (``sub-<label>.done`` or ``group.done``); a participant takes
    ``$FAKE_APPTAINER_SECONDS`` (0.5) seconds, and exits 65 if its label is ``$FAKE_APPTAINER_FAIL_LABEL``.
    ``exec``: runs the host's ``bids_recon`` with the container paths of ARGS mapped to the bound host folders,
    in an empty environment plus the image's settings.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

IMAGE_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
             "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NIPYPE_NO_ET": "1", "TEMPLATEFLOW_AUTOUPDATE": "0"}


# ------------------------------------------------------------------------------------------------------ sbatch
def _state_dir() -> Path:
    return Path(os.environ["FAKE_SLURM_DIR"])


def _next_job_id() -> int:
    counter = _state_dir() / "last_job_id"
    counter.parent.mkdir(parents=True, exist_ok=True)
    with open(_state_dir() / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        job_id = int(counter.read_text()) + 1 if counter.exists() else 1000
        counter.write_text(str(job_id))
    return job_id


def _parse_sbatch(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Options (long names, ``--x=v`` or ``--x v``) and the script + its arguments."""
    options: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        word = argv[i]
        if "=" in word:
            key, value = word.lstrip("-").split("=", 1)
        elif word in ("--parsable", "--wait", "-W"):
            key, value = word.lstrip("-"), "1"
        else:
            key, value = word.lstrip("-"), argv[i + 1]
            i += 1
        options[key] = value
        i += 1
    if i >= len(argv):
        sys.exit("sbatch: error: no batch script given")
    return options, argv[i:]


def _script_options(script: Path) -> dict[str, str]:
    options = {}
    for line in script.read_text().splitlines():
        match = re.match(r"#SBATCH\s+--([\w-]+)(?:[= ](\S+))?", line)
        if match:
            options[match.group(1)] = match.group(2) or "1"
    return options


def _array_tasks(spec: str | None) -> list[int] | None:
    if not spec:
        return None
    tasks = []
    for part in spec.split("%")[0].split(","):
        low, _, high = part.partition("-")
        tasks += list(range(int(low), int(high or low) + 1))
    return tasks


def _mem_mb(text: str) -> str:
    number, unit = re.fullmatch(r"(\d+)([KMGT]?)", text.upper()).groups()
    return str(int(int(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2}[unit]))


def sbatch(argv: list[str]) -> int:
    cli, command = _parse_sbatch(argv)
    script = Path(command[0]).resolve()
    options = {**_script_options(script), **cli}
    dependencies = []
    if "dependency" in options:
        kind, _, ids = options["dependency"].partition(":")
        if kind != "afterok":
            sys.exit(f"sbatch stand-in: only afterok dependencies, not {kind!r}")
        dependencies = [int(i.split("_")[0]) for i in ids.split(":")]
    job_id = _next_job_id()
    job_dir = _state_dir() / "jobs" / str(job_id)
    job_dir.mkdir(parents=True)
    job = {"id": job_id, "script": str(script), "args": command[1:], "options": options, "cwd": os.getcwd(),
           "dependencies": dependencies, "tasks": _array_tasks(options.get("array")), "env": dict(os.environ),
           "submitted": time.time()}
    (job_dir / "job.json").write_text(json.dumps(job, indent=1))
    subprocess.Popen([sys.executable, __file__, "--supervise", str(job_dir)], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(job_id if "parsable" in options else f"Submitted batch job {job_id}", flush=True)
    return 0


def supervise(job_dir: Path) -> None:
    job = json.loads((job_dir / "job.json").read_text())
    for dep in job["dependencies"]:
        state_file = _state_dir() / "jobs" / str(dep) / "state"
        while not state_file.exists():
            time.sleep(0.05)
        if state_file.read_text().strip() != "COMPLETED":
            (job_dir / "state").write_text("DependencyNeverSatisfied\n")
            return
    (job_dir / "started").write_text(repr(time.time()))
    options, tasks = job["options"], job["tasks"]
    processes = {}
    for task in tasks or [None]:
        env = dict(job["env"])
        task_job_id = job["id"] if task is None else job["id"] * 1000 + task
        env.update({"SLURM_JOB_ID": str(task_job_id), "SLURM_SUBMIT_DIR": job["cwd"],
                    "SLURM_CPUS_PER_TASK": options.get("cpus-per-task", "1"),
                    "SLURM_MEM_PER_NODE": _mem_mb(options.get("mem", "1G"))})
        tmp = job_dir / f"tmp-{task}"
        tmp.mkdir()
        env["TMPDIR"] = str(tmp)
        if task is not None:
            env.update({"SLURM_ARRAY_JOB_ID": str(job["id"]), "SLURM_ARRAY_TASK_ID": str(task),
                        "SLURM_ARRAY_TASK_COUNT": str(len(tasks))})
        pattern = options.get("output", "slurm-%j.out")
        output = pattern.replace("%A", str(job["id"])).replace("%a", str(task)).replace("%j", str(task_job_id))
        output_path = Path(job["cwd"], output)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        with open(output_path, "w") as out:
            processes[task] = subprocess.Popen(["bash", job["script"], *job["args"]], cwd=job["cwd"], env=env,
                                               stdout=out, stderr=subprocess.STDOUT)
    codes = {task: process.wait() for task, process in processes.items()}
    for task, code in codes.items():
        (job_dir / f"task-{task}.exit").write_text(str(code))
    (job_dir / "state").write_text("COMPLETED\n" if not any(codes.values()) else "FAILED\n")


# --------------------------------------------------------------------------------------------------- apptainer
def _parse_apptainer(argv: list[str]) -> tuple[dict, str, list[str]]:
    if argv[:1] != ["run"]:
        sys.exit(f"apptainer stand-in: only 'run', not {argv[:1]}")
    opts: dict = {"binds": [], "env": {}, "flags": []}
    i = 1
    while argv[i].startswith("-"):
        word = argv[i]
        if word in ("--nv", "--cleanenv", "-e", "--containall", "--writable-tmpfs"):
            opts["flags"].append(word)
        elif word in ("-B", "--bind"):
            host, container, *mode = argv[i + 1].split(":")
            opts["binds"].append((host, container, mode[0] if mode else "rw"))
            i += 1
        elif word == "--home":
            opts["home"] = argv[i + 1]
            i += 1
        elif word == "--env":
            key, _, value = argv[i + 1].partition("=")
            opts["env"][key] = value
            i += 1
        elif word == "--env-file":
            for line in Path(argv[i + 1]).read_text().splitlines():
                if "=" in line and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    opts["env"][key] = value
            i += 1
        else:
            sys.exit(f"apptainer stand-in: unknown option {word}")
        i += 1
    return opts, argv[i], argv[i + 1:]


def _host_path(path: str, binds: list[tuple[str, str, str]]) -> str:
    for host, container, _ in sorted(binds, key=lambda b: -len(b[1])):
        if path == container or path.startswith(container.rstrip("/") + "/"):
            return host + path[len(container):]
    return path


def apptainer(argv: list[str]) -> int:
    opts, image, args = _parse_apptainer(argv)
    binds = opts["binds"]
    out = Path(_host_path("/out", binds))
    level = args[2] if len(args) > 2 else None
    labels = []
    if "--participant-label" in args:
        i = args.index("--participant-label") + 1
        while i < len(args) and not args[i].startswith("-"):
            labels.append(args[i])
            i += 1
    if os.environ.get("FAKE_APPTAINER_MODE", "record") == "exec":
        mapped = [re.sub(r"^(\w+=)?(/.*)$", lambda m: (m.group(1) or "") + _host_path(m.group(2), binds), a)
                  for a in args]
        env = {"PATH": os.environ["PATH"], "HOME": opts.get("home", "/nonexistent"), "LANG": "C.UTF-8", **IMAGE_ENV,
               "TEMPLATEFLOW_HOME": os.environ["FAKE_IMAGE_TEMPLATEFLOW_HOME"],  # the image's /opt/templateflow
               **{k: _host_path(v, binds) for k, v in opts["env"].items()}}
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return subprocess.run([os.environ.get("FAKE_BIDS_RECON", "bids_recon"), *mapped], env=env).returncode
    start = time.time()
    present = sorted(p.name for p in out.glob("sub-*.done"))
    if level == "participant":
        time.sleep(float(os.environ.get("FAKE_APPTAINER_SECONDS", "0.5")))
        for label in labels:
            (out / f"sub-{label}.done").write_text(" ".join(args))
    elif level == "group":
        (out / "group.done").write_text(" ".join(args))
    record = {"level": level, "labels": labels, "start": start, "end": time.time(), "image": image, "args": args,
              "binds": binds, "flags": opts["flags"], "env": opts["env"], "present_at_start": present,
              "slurm": {k: v for k, v in os.environ.items() if k.startswith("SLURM_")}}
    with open(os.environ["FAKE_APPTAINER_LOG"], "a") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.write(json.dumps(record) + "\n")
    return 65 if os.environ.get("FAKE_APPTAINER_FAIL_LABEL") in labels else 0


def install(bin_dir: Path) -> Path:
    """Write the ``sbatch`` and ``apptainer`` commands into ``bin_dir`` (to put first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("sbatch", "apptainer"):
        command = bin_dir / name
        command.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(__file__)} {name} "$@"\n')
        command.chmod(0o755)
    return bin_dir


if __name__ == "__main__":
    what, rest = sys.argv[1], sys.argv[2:]
    if what == "--supervise":
        supervise(Path(rest[0]))
    elif what == "sbatch":
        sys.exit(sbatch(rest))
    elif what == "apptainer":
        sys.exit(apptainer(rest))
    else:
        sys.exit(f"usage: {Path(__file__).name} sbatch|apptainer ARGS...")
