"""Atomic file writing: a killed run never leaves a truncated file under its final name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    The temporary name keeps the final suffixes (``.nii.gz``, ``.png``...) so that writers choosing
    the format from the file name still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write a JSON document (sorted keys, indented) atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_tsv(path: Path, table: pd.DataFrame) -> Path:
    """Write a table as BIDS TSV (tab separated, ``n/a`` for missing values) atomically."""
    return atomic_write(path, lambda tmp: table.to_csv(tmp, sep="\t", index=False, na_rep="n/a"))


def read_tsv(path: Path, dtype: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read a BIDS TSV file (``n/a`` as missing)."""
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype=dtype)


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Save arrays to an uncompressed ``.npz`` file atomically."""
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
