"""Expensive test inputs (simulated datasets, pipeline runs) made once per test session, whichever worker asks first.

The suite runs on several pytest-xdist workers. A dataset or a pipeline run that several tests need is built by
the first worker that asks for it, under a file lock, in a folder named by its content key (a name and the
parameters that decide it); the other workers wait for the lock and reuse what was built. The result (paths, exit
codes, logs: anything picklable) is kept beside it. So no run is made twice, however pytest hands out the tests: the
suite's speed does not rest on a scheduler option (``--dist loadgroup``) or on a pytest version that honours it.

A build that fails leaves no record: the next request builds again, in a fresh folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import pickle
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every worker of this test session shares (the parent of the workers' own base folders)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if base.name.startswith("popen-gw") else base) / "shared"
    root.mkdir(parents=True, exist_ok=True)
    return root


def content_key(name: str, parts: dict[str, Any] | None = None) -> str:
    """``name.<digest>``: the folder name of what ``name`` with these ``parts`` builds (no ``-``: pybids reads
    ``_run-12`` in a parent folder's name as a run entity)."""
    text = json.dumps(parts or {}, sort_keys=True, default=str)
    return f"{name}.{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@contextmanager
def _locked(path: Path, exclusive: bool = True) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def shared_access(tmp_path_factory: pytest.TempPathFactory, name: str, exclusive: bool = False,
                  **parts: Any) -> Iterator[None]:
    """Hold what :func:`shared` built for ``name`` and ``parts`` while a test uses it: many readers at once
    (``exclusive=False``), or one test alone (``exclusive=True``: it changes the files and puts them back)."""
    root = session_root(tmp_path_factory)
    with _locked(root / f"{content_key(name, parts)}.access", exclusive):
        yield


def shared(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Any],
           **parts: Any) -> Any:
    """What ``build(folder)`` returns, built once per session for ``name`` and ``parts``.

    Parameters
    ----------
    name : str
        What is built (``tiny_dataset``, ``tiny_run``...).
    build : callable
        ``build(folder) -> result``: makes everything inside ``folder`` (created empty) and returns something
        picklable (paths, completed processes, dicts of them).
    **parts
        What decides the result besides ``name`` (seeds, presets, flags): part of the key.
    """
    root = session_root(tmp_path_factory)
    key = content_key(name, parts)
    record = root / f"{key}.pickle"
    with _locked(root / f"{key}.lock"):
        if record.is_file():
            return pickle.loads(record.read_bytes())
        folder = root / key
        if folder.exists():  # a build that failed before
            shutil.rmtree(folder)
        folder.mkdir()
        result = build(folder)
        temporary = record.with_suffix(".partial")
        temporary.write_bytes(pickle.dumps(result))
        temporary.replace(record)
        return result
