"""Atomic file writing: a killed run never leaves a truncated file under its final name."""

from __future__ import annotations

import json
import os
import re
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


#: A temporary file of :func:`atomic_write`: ``.<first part of the final name>.<mkstemp's 8 characters><suffixes>``.
_TEMPORARY = re.compile(r"^\.(?P<stem>[^.]+)\.[a-z0-9_]{8}(?P<suffix>(\.[^.]+)*)$")


def remove_stale_temporaries(output_dir: Path, subject: str) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` left for one participant when its run was killed.

    Looks under ``output_dir/sub-<subject>/`` and at the participant's files in ``output_dir`` itself (its report,
    its marker), never at another participant's files, which another run may be writing. Call it before a run
    writes any of the participant's outputs.

    Parameters
    ----------
    output_dir : Path
        Root of the derivatives dataset.
    subject : str
        Participant label, without ``sub-``.

    Returns
    -------
    list of Path
        The files removed.
    """
    output_dir = Path(output_dir)
    folder = output_dir / f"sub-{subject}"
    candidates = [*(folder.rglob(".*") if folder.is_dir() else []), *output_dir.glob(f".sub-{subject}*")]
    removed = []
    for path in candidates:
        match = _TEMPORARY.match(path.name)
        stem = match["stem"] if match else ""
        if (stem == f"sub-{subject}" or stem.startswith(f"sub-{subject}_")) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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


def npz_array_mapped(npz: Path, key: str, target: Path) -> np.ndarray:
    """Array ``key`` of the ``.npz`` file ``npz`` as a read-only memory map, through the ``.npy`` file ``target``.

    A ``.npz`` member cannot be memory-mapped; it is streamed to ``target`` (atomically, never whole in memory) so
    that a large array (NSD's c features: 9,974 x 59,136 float32, 2.4 GB) is paged in by the blocks a reader
    touches instead of held in anonymous memory.
    """
    import shutil
    import zipfile

    with zipfile.ZipFile(npz) as archive:
        member = f"{key}.npy"
        if member not in archive.namelist():
            from bids_recon.errors import BadDataError

            raise BadDataError(f"no array '{key}' (has: {', '.join(n[:-4] for n in archive.namelist())})", npz)

        def copy(tmp: Path) -> None:
            with archive.open(member) as source, open(tmp, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 24)

        atomic_write(Path(target), copy)
    return np.load(target, mmap_mode="r")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file's bytes, read in chunks (the one implementation: sidecars, provenance, caches)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_matlab(path: Path, names: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """Variables of a MATLAB file, v5 (scipy) or v7.3 (HDF5, h5py), as arrays in MATLAB's axis order.

    h5py sees a v7.3 file's arrays with their axes reversed (MATLAB stores columns first); they are transposed
    back, so both versions give the same shapes (``masterordering`` is ``(1, 30000)`` either way).

    Parameters
    ----------
    path : Path
        The ``.mat`` file.
    names : sequence of str
        Variables to read; those absent are left out of the result.

    Raises
    ------
    bids_recon.errors.BadDataError
        Not a MATLAB file that scipy or h5py can read (the message names the file).
    """
    from bids_recon.errors import BadDataError

    path = Path(path)
    try:
        from scipy.io import loadmat

        found = loadmat(path, variable_names=list(names))
        return {name: np.asarray(found[name]) for name in names if name in found}
    except NotImplementedError:  # v7.3 files are HDF5
        pass
    except Exception as exc:  # scipy raises several types for files that are not MATLAB v5
        if not _is_hdf5(path):
            raise BadDataError(f"cannot read MATLAB file ({exc})", path) from exc
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return {name: np.asarray(handle[name]).T for name in names
                    if name in handle and isinstance(handle[name], h5py.Dataset)}
    except OSError as exc:
        raise BadDataError(f"cannot read MATLAB v7.3 (HDF5) file ({exc})", path) from exc


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(1024)
    return b"\x89HDF\r\n\x1a\n" in head
