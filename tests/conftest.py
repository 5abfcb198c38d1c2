"""Shared fixtures: simulated datasets (made once per test session) and the pipeline run on them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from tests.shared import shared, shared_access

os.environ.setdefault("NIPYPE_NO_ET", "1")
# One BLAS thread per test process, as a run gives each nipype process (--omp-nthreads 1): two workers with two
# OpenBLAS threads each made the in-process GLM tests 3-4x slower (eigh and SVD oversubscribed: 15 s instead of 4 s)
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
threadpool_limits(limits=int(os.environ["OMP_NUM_THREADS"]))  # numpy may be loaded already (a plugin, an import)
#: Pipeline runs in the tests treat numpy/pandas RuntimeWarnings as errors ("Mean of empty slice" once was the only
#: sign that z-scored betas were uninitialised memory): in-process by pyproject's filterwarnings, in every
#: subprocess a test starts by this variable.
STRICT_WARNINGS = "error::RuntimeWarning"
os.environ["PYTHONWARNINGS"] = STRICT_WARNINGS

#: Caches the suite's command-line runs share, as a user's runs share their home's: without them every run's work
#: dir would build matplotlib's font list and Deno's code cache anew (about 1 s each run). ``tiny_run`` runs without
#: them, to check that a run writes its caches into its work dir.
SHARED_CACHES = ("MPLCONFIGDIR", "DENO_DIR")


@pytest.fixture(scope="session", autouse=True)
def shared_caches(tmp_path_factory):
    for variable in SHARED_CACHES:
        os.environ.setdefault(variable, str(tmp_path_factory.mktemp("caches") / variable.lower()))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The ``tiny`` simulated dataset: raw BIDS, fMRIPrep derivatives, TemplateFlow folder, ground truth (made once
    per test session, by whichever worker asks first: :func:`tests.shared.shared`). Tests must not change it: copy."""
    from bids_recon.sim import simulate_dataset

    return shared(tmp_path_factory, "tiny_dataset",
                  lambda folder: simulate_dataset(folder / "ds", preset="tiny", seed=0), preset="tiny", seed=0)


@pytest.fixture(scope="session")
def layout_dataset(tmp_path_factory):
    """``layout_dataset("nsd")``: a one-subject tiny dataset in a public dataset's layout (made once per session)."""
    from bids_recon.sim import simulate_dataset

    def make(layout: str):
        return shared(tmp_path_factory, f"layout_{layout}",
                      lambda folder: simulate_dataset(folder / "ds", preset="tiny", seed=0, layout=layout,
                                                      n_subjects=1), layout=layout)

    return make


def layout_copy(dataset, target: Path):
    """Copy a layout dataset (its OUT folder and OUT_stimuli) to ``target``; returns (bids_dir, stores_dir)."""
    from bids_recon.sim.simulate import stores_path

    root = dataset.bids_dir.parent if dataset.layout == "nsd" else dataset.bids_dir
    shutil.copytree(root, target)
    if dataset.stores_dir is not None:
        shutil.copytree(dataset.stores_dir, stores_path(target))
    bids = target / dataset.bids_dir.relative_to(root)
    return bids, (target if dataset.layout == "nsd" else stores_path(target))


@pytest.fixture(scope="session")
def tiny_sd(tiny_dataset, tmp_path_factory):
    """A tiny SD pipeline saved with save_pretrained, whose tokenizer knows the simulated captions' words."""
    from bids_recon.generate.testing import save_tiny_model, words_of
    from bids_recon.io import read_tsv

    captions = read_tsv(tiny_dataset.bids_dir / "stimuli" / "captions.tsv")["caption"]
    return shared(tmp_path_factory, "tiny_sd", lambda folder: save_tiny_model(folder / "tiny-sd", words_of(captions)))


def run_cli(args: list[str], templateflow_dir: Path, env: dict[str, str | None] | None = None,
            **kwargs) -> subprocess.CompletedProcess:
    """Run ``bids_recon`` in a subprocess as a user would, with TEMPLATEFLOW_HOME set and RuntimeWarnings errors
    (``env``: variables added, or removed where ``None``)."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    env.update({"TEMPLATEFLOW_HOME": str(templateflow_dir), "NIPYPE_NO_ET": "1", "PYTHONWARNINGS": STRICT_WARNINGS})
    return subprocess.run([sys.executable, "-m", "bids_recon", *args], capture_output=True, text=True, env=env,
                          **kwargs)


def file_states(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: relative path -> (is a folder, mtime in ns, size) (to find what changed)."""
    return {p.relative_to(folder).as_posix(): (p.is_dir(), p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*"))}


#: Where a run could write outside OUT and the work dir: fresh empty folders for the ``tiny_run`` (the current folder
#: as ``cwd``); tests/cli/test_outside_writes.py checks they stay empty.
OUTSIDE = ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TMPDIR", "cwd")


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory):
    """The participant and group levels run once on the tiny dataset (once per session, whichever worker asks first),
    with the :data:`OUTSIDE` folders fresh and empty, and the inputs (raw, fMRIPrep, TemplateFlow) listed before and
    after (``inputs_before``, ``..._after``)."""
    return shared(tmp_path_factory, "tiny_run", lambda root: _tiny_run(tiny_dataset, root))


@pytest.fixture(autouse=True)
def _shared_run_access(request, tmp_path_factory):
    """Tests that use ``tiny_run`` read it while tests on other workers may too (a shared lock); a test marked
    ``changes_shared_run`` (it deletes outputs and runs again into the same folders) has it alone (an exclusive lock)
    and must leave it as it found it."""
    if "tiny_run" not in request.fixturenames:
        yield
        return
    alone = request.node.get_closest_marker("changes_shared_run") is not None
    with shared_access(tmp_path_factory, "tiny_run", exclusive=alone):
        yield


def _tiny_run(tiny_dataset, root: Path) -> dict:
    out, work = root / "out", root / "work"
    outside = {name: root / "outside" / name for name in OUTSIDE}
    for folder in outside.values():
        folder.mkdir(parents=True)
    env = {**{name: str(folder) for name, folder in outside.items() if name != "cwd"}, **dict.fromkeys(SHARED_CACHES)}
    inputs = (tiny_dataset.bids_dir, tiny_dataset.templateflow_dir)
    before = {str(folder): file_states(folder) for folder in inputs}
    participant = run_cli([str(tiny_dataset.bids_dir), str(out), "participant", "-d",
                           f"fmriprep={tiny_dataset.fmriprep_dir}", "-w", str(work), "--nprocs", "2"],
                          tiny_dataset.templateflow_dir, env=env, cwd=outside["cwd"])
    group = run_cli([str(tiny_dataset.bids_dir), str(out), "group"], tiny_dataset.templateflow_dir, env=env,
                    cwd=outside["cwd"])
    return {"out": out, "work": work, "participant": participant, "group": group, "dataset": tiny_dataset,
            "outside": outside, "inputs_before": before,
            "inputs_after": {str(folder): file_states(folder) for folder in inputs}}


def cli_config(tmp_path: Path, *flags: str, toml: str | None = None, bids: Path | None = None):
    """The configuration ``bids_recon BIDS OUT participant FLAGS [--config-file TOML]`` builds (nothing is run)."""
    from bids_recon.cli.parser import build_parser
    from bids_recon.cli.run import build_config

    argv = [str(bids or tmp_path / "ds"), str(tmp_path / "out"), "participant", *flags]
    if toml is not None:
        (tmp_path / "c.toml").write_text(toml)
        argv += ["--config-file", str(tmp_path / "c.toml")]
    parser = build_parser()
    return build_config(parser.parse_args(argv), parser)


def validator_errors(folder: Path) -> tuple[int, list[dict]]:
    """Run bids-validator-deno on ``folder`` (skips the test when it is not installed): exit code, error issues."""
    import json

    exe = bids_validator()
    if exe is None:
        pytest.skip("bids-validator-deno is not installed")
    proc = subprocess.run([exe, str(folder), "--format", "json", "--ignoreWarnings"], capture_output=True, text=True)
    issues = json.loads(proc.stdout)["issues"]["issues"] if proc.stdout.strip() else []
    return proc.returncode, [i for i in issues if i.get("severity") == "error"]


def bids_validator() -> str | None:
    return shutil.which("bids-validator-deno") or (
        str(Path(sys.executable).parent / "bids-validator-deno")
        if (Path(sys.executable).parent / "bids-validator-deno").exists() else None
    )


#: A ``sitecustomize.py`` that makes any IP connection or name lookup fail (Unix sockets, which
#: multiprocessing uses, still work).
NO_NETWORK = """
import socket

def _refuse(*args, **kwargs):
    raise OSError("network access is disabled in this test")

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex

def _connect_local(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse()
    return _connect(self, address, *args)

def _connect_ex_local(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse()
    return _connect_ex(self, address, *args)

socket.socket.connect = _connect_local
socket.socket.connect_ex = _connect_ex_local
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""


def no_network_env(sandbox: Path, **extra: str) -> dict[str, str]:
    """Environment for a subprocess with no network: ``sandbox`` gets a sitecustomize.py put on PYTHONPATH.

    The hub's own offline switches are removed, so the run proves that nothing tries to reach out.
    """
    sandbox.mkdir(parents=True, exist_ok=True)
    (sandbox / "sitecustomize.py").write_text(NO_NETWORK)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "NIPYPE_NO_ET": "1", **extra,
            "PYTHONPATH": os.pathsep.join([str(sandbox), str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}


def participant_files(out: Path, subject: str = "01") -> dict[str, bytes]:
    """Every file under ``out/sub-<subject>/``: relative path -> content (to compare runs byte for byte)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / f"sub-{subject}").rglob("*"))
            if p.is_file()}


#: Fixtures that run the pipeline or build the evaluation networks: the tests that use them are ``slow`` (the fast loop,
#: ``-m "not slow"``, leaves them out).
HEAVY_FIXTURES = {"tiny_run", "caches", "full_run", "evaluator", "metrics_run", "concurrent_runs", "diffusion_run",
                  "other_seed_run", "faces_run", "offline_run", "resumed_run", "pipeline_run"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With ``--dist loadgroup`` a module's tests run on one worker (they share module- and session-scoped runs of
    the pipeline), except tests marked ``spread``: independent cases (one bad input, one layout each) that any
    worker may take, so that the slowest module does not decide the suite's wall time. Modules with slow tests
    are handed out first and the quick ones fill the gaps at the end (a module's own order is kept)."""
    for item in items:  # a test that needs a whole pipeline run (or networks' random weights) is slow, marked or not
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow") is not None}
    for item in items:
        if item.get_closest_marker("spread") is None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))

    def rank(item) -> int:
        spread = item.get_closest_marker("spread") is not None
        return (0 if not spread else 1) if item.module.__name__ in slow_modules else 2

    items.sort(key=rank)
