"""Map an events row's stimulus to its image and captions, safely, inside the dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.io import read_tsv


@dataclass(frozen=True)
class StimulusResolver:
    """Resolve stimulus identifiers (the events column's values) to image files.

    Parameters
    ----------
    bids_dir : Path
        Root of the raw dataset; nothing outside it is ever read.
    folder : str
        Folder of the images, relative to ``bids_dir`` (BIDS: ``stimuli``).
    """

    bids_dir: Path
    folder: str = "stimuli"

    @property
    def root(self) -> Path:
        return (Path(self.bids_dir) / self.folder).resolve()

    def path(self, stim_id: str) -> Path:
        """Return the image file of ``stim_id`` (a path relative to the stimuli folder).

        Raises
        ------
        BadDataError
            The name is absolute or leads outside the dataset (``../``, symlinks).
        MissingInputError
            The file does not exist.
        """
        relative = Path(str(stim_id))
        if relative.is_absolute() or ".." in relative.parts:
            raise BadDataError(f"stimulus '{stim_id}' must be a path relative to {self.folder}/", self.root)
        candidate = self.root / relative
        resolved = candidate.resolve()
        dataset_root = Path(self.bids_dir).resolve()
        if not resolved.is_relative_to(dataset_root):
            raise BadDataError(f"stimulus '{stim_id}' leads outside the dataset (to {resolved})", candidate)
        if not resolved.is_file():
            raise MissingInputError(f"stimulus '{stim_id}' not found", candidate)
        return resolved

    def check_image(self, stim_id: str) -> Path:
        """Resolve ``stim_id`` (see :meth:`path`) and check that the file is an image Pillow can open.

        Only the header is read (fast enough for tens of thousands of stimuli); raises ``BadDataError`` when
        the file is not an image.
        """
        path = self.path(stim_id)
        try:
            with Image.open(path) as img:
                img.size  # noqa: B018 - reading the header is the check
        except OSError as exc:
            raise BadDataError(f"stimulus '{stim_id}' is not an image Pillow can read ({exc})", path) from exc
        return path

    def load_image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        """Load one stimulus as RGB floats in [0, 1], shape ``(size, size, 3)`` (or its own size)."""
        path = self.path(stim_id)
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
                if size is not None and rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
                return np.asarray(rgb, dtype=np.float32) / 255.0
        except OSError as exc:
            raise BadDataError(f"cannot read image ({exc})", path) from exc

    def load_images(self, stim_ids: list[str], size: int) -> np.ndarray:
        """Load several stimuli; returns ``(n_stimuli, size, size, 3)`` float32 in [0, 1]."""
        if not stim_ids:
            return np.zeros((0, size, size, 3), np.float32)
        return np.stack([self.load_image(s, size) for s in stim_ids])


def load_captions(path: Path, stim_ids: list[str] | None = None) -> dict[str, list[str]]:
    """Read a captions table (``stim_file``, ``caption``; several rows per stimulus allowed).

    Returns
    -------
    dict
        Stimulus id -> its captions. When ``stim_ids`` is given, every one must have a caption.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("captions table does not exist", path)
    table = read_tsv(path)
    for column in ("stim_file", "caption"):
        if column not in table:
            raise BadDataError(f"captions table lacks the '{column}' column", path)
    captions: dict[str, list[str]] = {}
    for stim, caption in zip(table["stim_file"].astype(str), table["caption"].astype(str), strict=True):
        captions.setdefault(stim, []).append(caption)
    if stim_ids is not None:
        missing = [s for s in stim_ids if s not in captions]
        if missing:
            raise BadDataError(f"{len(missing)} stimuli have no caption (first: {missing[0]})", path)
    return captions
