"""Keep a run's writes inside OUTPUT_DIR and the work directory.

The libraries a participant or group run loads keep caches and temporary files in the user's home by default:
matplotlib's font cache (``~/.cache/matplotlib``, ``~/.config/matplotlib``), the BIDS validator's Deno cache
(``~/.cache/deno``), torch's compiled-kernel caches (``$TMPDIR/torchinductor_<user>``, ``~/.cache/torch/kernels``,
``~/.triton``, ``~/.nv/ComputeCache``), transformers' module cache, numba's cache, nipype's ``~/.nipype``,
fontconfig's cache and any ``tempfile`` user. :func:`confine_writes` points them into ``WORK/cache`` and
``WORK/tmp`` before those libraries are imported (the CLI calls it right after reading the configuration).

Two kinds of variables:

- one library's own cache folder (:data:`CACHE_VARIABLES`): set to ``WORK/cache/<name>`` unless the user set it
  (a deliberate choice, e.g. a shared numba cache, is kept);
- the generic locations (:data:`GENERIC_VARIABLES`: ``XDG_CACHE_HOME``, ``TMPDIR``) are always moved, also when
  set: a scheduler's ``TMPDIR`` is still outside the run's folders. The read-only stores that default to a folder
  under ``XDG_CACHE_HOME`` (:data:`READ_HOMES`: the Hugging Face and torch hub caches with the models and network
  weights, TemplateFlow's folder) are first pinned where the user's environment puts them, so they are still
  found there (and only read: downloads happen only with ``--allow-download``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Variable -> folder under ``WORK/cache``: one library's cache, moved unless the user set the variable.
CACHE_VARIABLES: dict[str, str] = {
    "MPLCONFIGDIR": "matplotlib",  # font list cache and matplotlibrc (default ~/.cache, ~/.config/matplotlib)
    "DENO_DIR": "deno",  # bids-validator-deno's module and code caches (default ~/.cache/deno)
    "NUMBA_CACHE_DIR": "numba",
    "NIPYPE_CONFIG_DIR": "nipype",  # nipype's ~/.nipype (nipype.json, written by its display and version checks)
    "HF_MODULES_CACHE": "huggingface_modules",  # transformers' dynamic modules (default HF_HOME/modules)
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",  # default $TMPDIR/torchinductor_<user>
    "TRITON_CACHE_DIR": "triton",  # default ~/.triton/cache
    "PYTORCH_KERNEL_CACHE_PATH": "torch_kernels",  # CUDA JIT kernels (default ~/.cache/torch/kernels)
    "CUDA_CACHE_PATH": "nv_compute_cache",  # the CUDA driver's JIT cache (default ~/.nv/ComputeCache)
}

#: Generic locations, always moved into the work directory (``TMPDIR``: ``WORK/tmp``; the others ``WORK/cache``).
GENERIC_VARIABLES = ("XDG_CACHE_HOME", "TMPDIR")


def _xdg_cache(env: dict[str, str]) -> str:
    return env.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")


def _templateflow_default(env: dict[str, str]) -> str:
    if sys.platform.startswith("linux"):
        return os.path.join(_xdg_cache(env), "templateflow")
    from bids_recon.rois.templates import templateflow_home  # platformdirs' rule elsewhere (no XDG there)

    return str(templateflow_home())


#: Read-only stores whose default lies under ``XDG_CACHE_HOME``: variable -> its default from the user's
#: environment (huggingface_hub's, torch.hub's and templateflow's rules); pinned before ``XDG_CACHE_HOME`` moves.
READ_HOMES = {
    "HF_HOME": lambda env: os.path.join(_xdg_cache(env), "huggingface"),
    "TORCH_HOME": lambda env: os.path.join(_xdg_cache(env), "torch"),
    "TEMPLATEFLOW_HOME": _templateflow_default,
}


def confine_writes(work_dir: Path | str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Point the caches and temporary files of the libraries a run uses into ``work_dir``.

    Call it before importing matplotlib, nipype, torch or templateflow (they read these variables once, at
    import); the change lasts as long as the process (and its workers, which inherit it).

    Parameters
    ----------
    work_dir : Path or str
        The run's work directory (``-w``); ``cache/`` and ``tmp/`` are created in it.
    environ : dict, optional
        The environment to change (``os.environ`` when omitted).

    Returns
    -------
    dict
        Every variable set, with its value (for the log).
    """
    env = os.environ if environ is None else environ
    work = Path(work_dir).absolute()
    cache, tmp = work / "cache", work / "tmp"
    changed: dict[str, str] = {}
    for variable, default in READ_HOMES.items():
        if not env.get(variable):
            changed[variable] = str(Path(default(env)).expanduser())
    for variable, name in CACHE_VARIABLES.items():
        if not env.get(variable):
            changed[variable] = str(cache / name)
    changed["XDG_CACHE_HOME"] = str(cache)
    changed["TMPDIR"] = str(tmp)
    cache.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)  # tempfile needs it to exist; the libraries make their own folders
    env.update(changed)
    if environ is None:
        tempfile.tempdir = None  # tempfile caches the folder it chose on first use: choose again
    return changed


@contextlib.contextmanager
def confined(work_dir: Path | str, fallback: Path | str | None = None) -> Iterator[dict[str, str]]:
    """:func:`confine_writes` on ``os.environ`` for the time of a ``with`` block, then every variable it set back
    as it was (for callers that go on after a run: tests, notebooks; a command-line run just ends).

    A folder that this block created and that holds only ``cache/`` and ``tmp/`` at the end (no workflow ran:
    ``--check-only``, the group level, inputs refused before any node) is removed, so that such runs leave no work
    directory behind.

    Parameters
    ----------
    work_dir : Path or str
        The run's work directory.
    fallback : Path or str, optional
        Where the caches go when ``work_dir`` cannot be created (the group level, whose default work directory
        may be on a read-only file system, e.g. ``/work`` in a container); removed at the end.

    Yields
    ------
    dict
        Every variable set, with its value.

    Raises
    ------
    UsageError
        Neither ``work_dir`` nor ``fallback`` can hold ``cache/`` and ``tmp/`` (exit 64).
    """
    names = (*READ_HOMES, *CACHE_VARIABLES, *GENERIC_VARIABLES)
    previous = {name: os.environ.get(name) for name in names}
    for folder in [Path(work_dir).absolute(), *([Path(fallback).absolute()] if fallback is not None else [])]:
        created = not folder.exists()
        try:
            changed = confine_writes(folder)
            break
        except OSError as exc:
            error = exc
    else:
        from bids_recon.errors import UsageError

        raise UsageError(f"cannot create the work directory's cache/ and tmp/ ({error}): choose another -w",
                         work_dir) from error
    try:
        yield changed
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        tempfile.tempdir = None
        if created:
            _remove_if_only_caches(folder)


def _remove_if_only_caches(work: Path) -> None:
    """Remove ``work`` when it holds nothing but the ``cache/`` and ``tmp/`` this module made."""
    with contextlib.suppress(OSError):
        if {p.name for p in work.iterdir()} <= {"cache", "tmp"}:
            for name in ("cache", "tmp"):
                shutil.rmtree(work / name, ignore_errors=True)
            work.rmdir()
