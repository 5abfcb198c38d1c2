"""A content-addressed cache of per-stimulus feature arrays, shared across subjects and runs.

An entry is keyed by (feature space, extractor identity, content hash of the stimulus) and stored as
``ROOT/<extractor>/<space>/<hash[:2]>/<hash>.npz`` holding the array and the sha256 of its bytes. Reading
checks that digest: a truncated or corrupted entry is reported, deleted and counted as a miss, so the caller
recomputes it. Writes are atomic, so concurrent runs never see half-written entries.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bids_recon.io import atomic_write

LOGGER = logging.getLogger("bids_recon.features.cache")


def content_hash(data: bytes | str) -> str:
    """sha256 hex digest of bytes (or of UTF-8 text)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _array_digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return content_hash(str(array.dtype).encode() + str(array.shape).encode() + array.tobytes())


@dataclass
class FeatureCache:
    """Per-stimulus feature arrays on disk.

    Parameters
    ----------
    root : Path
        Cache folder (created on first write).
    extractor : str
        Identity of the extractor (e.g. a model key plus its settings); entries of other extractors are
        never returned.

    Attributes
    ----------
    hits, misses, corrupted : int
        Counters of :meth:`get` outcomes since creation.
    """

    root: Path
    extractor: str
    hits: int = 0
    misses: int = 0
    corrupted: int = 0
    _seen: set[str] = field(default_factory=set, repr=False)

    def path(self, space: str, key: str) -> Path:
        """File of the entry ``key`` (a content hash) in feature space ``space``."""
        return Path(self.root) / self.extractor / space / key[:2] / f"{key}.npz"

    def get(self, space: str, key: str) -> np.ndarray | None:
        """The cached array, or ``None`` when absent or corrupted (a corrupted file is removed)."""
        path = self.path(space, key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path) as data:
                array, digest = data["array"], str(data["sha256"])
            if _array_digest(array) != digest:
                raise ValueError("checksum mismatch")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            LOGGER.warning("feature cache entry %s is corrupted (%s): recomputing it", path, exc)
            path.unlink(missing_ok=True)
            self.corrupted += 1
            self.misses += 1
            return None
        self.hits += 1
        return array

    def put(self, space: str, key: str, array: np.ndarray) -> Path:
        """Store ``array`` under ``key`` (atomically) and return the file."""
        array = np.ascontiguousarray(array)
        digest = _array_digest(array)
        return atomic_write(self.path(space, key),
                            lambda tmp: np.savez(tmp, array=array, sha256=np.asarray(digest)))
