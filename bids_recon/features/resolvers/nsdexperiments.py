"""``nsdsynthetic`` and ``nsdimagery``: the images of NSD's two further experiments (see
:mod:`bids_recon.glm.importers.nsdexperiments` for the betas and the sources of every fact).

``nsdsynthetic``: ids ``"1"``..``"220"`` are rows ``id - 1`` of
``nsddata_stimuli/stimuli/nsdsynthetic/nsdsynthetic_stimuli.hdf5:/imgBrick`` (shared by all participants); ids
``"221_subj01"``..``"284_subj08"`` rows ``id - 221`` of ``nsdsynthetic_colorstimuli_subjNN.hdf5`` (each participant
saw their own colour versions) [V: gifale95/RNC, Ashsr/NaselarisLab NSDS_Access.py]. The images are not square
(both readers centre-crop them): they are centre-cropped to a square before resizing. ``gamma=sqrt`` applies
``sqrt(v / 255) * 255`` to the stored values, as gifale95/RNC does before showing them to a network (NSD's display
was linear [R]); the default keeps the stored values. NSD-synthetic has no captions: with ``category_captions``
(the preset's choice) a stimulus's caption is ``a photo of a <subclass>`` from
``nsddata/experiments/nsdsynthetic/nsdsyntheticimageinformation.csv`` (columns ``Image``, ``Image subclass``,
``Image class`` [R: one third-party loader]); without that file, or for a better text, give a captions TSV
(``stim_file`` = the stimulus id, ``caption``).

``nsdimagery``: ids are ``<condition>-<letter>`` (``vision-H``, ``imagery-W``) or the bare letter; the letter is
the target's cue letter (the behavioural files' ``CONDITION``), and :data:`IMAGERY_TARGETS` maps it to its image
in ``nsddata/experiments/nsdimagery/rawtargetimages/set{A,B}/`` [R: the letter -> file table comes from one
third-party analysis (its ``CUE_TO_TARGET``), the folder from several download scripts; NSD publishes the mapping
in ``cue_pair_list.xlsx`` / ``{A,B,C}_pair_list.mat``, whose format was not seen]. ``targets=TSV`` (columns
``letter``, ``file``) overrides the table; ``images=FOLDER`` the folder. Set C (``S Z M Y N F``) has no image.
Captions: set A targets get ``a photo of a bar`` / ``a cross`` with ``category_captions``; set B (NSD images,
``sharedNNNN_nsdNNNNN.png``) need a captions TSV.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.features.resolvers.base import StimulusResolver, as_float_image, read_image_file
from bids_recon.features.resolvers.nsd import open_image_brick
from bids_recon.features.resolvers.registry import register

#: Where an experiment's files are looked for, relative to the dataset folder: NSD's download root itself (the
#: import route), or a raw dataset beside it.
PREFIXES = ("", "../")
SYNTHETIC_DIR = "nsddata_stimuli/stimuli/nsdsynthetic"
SYNTHETIC_SHARED = "nsdsynthetic_stimuli.hdf5"
SYNTHETIC_COLOUR = "nsdsynthetic_colorstimuli_subj{subject}.hdf5"
SYNTHETIC_INFO = "nsddata/experiments/nsdsynthetic/nsdsyntheticimageinformation.csv"
SYNTHETIC_SHARED_IMAGES = 220
_SYNTHETIC_ID = re.compile(r"^(\d+)(?:_subj(\d+))?$")

#: NSD-Imagery: cue letter -> (stimulus set, target file) [R: third-party CUE_TO_TARGET; see the docstring].
IMAGERY_TARGETS = {
    "H": ("A", "bar_000.0deg_450L_43W.png"), "R": ("A", "bar_045.0deg_450L_43W.png"),
    "V": ("A", "bar_090.0deg_450L_43W.png"), "L": ("A", "bar_135.0deg_450L_43W.png"),
    "P": ("A", "crs_000.0deg_450L_43W.png"), "E": ("A", "crs_045.0deg_450L_43W.png"),
    "W": ("B", "shared0385_nsd28752.png"), "K": ("B", "shared0413_nsd30857.png"),
    "B": ("B", "shared0741_nsd53882.png"), "C": ("B", "shared0842_nsd61178.png"),
    "D": ("B", "shared0907_nsd65873.png"), "T": ("B", "shared0000_nsd00000.png"),
}
#: Set C's letters (conceptual targets: words, no image) [R: the same source].
IMAGERY_CONCEPTS = ("S", "Z", "M", "Y", "N", "F")
#: Cue letter -> stimulus set.
IMAGERY_SETS = {**{k: v[0] for k, v in IMAGERY_TARGETS.items()}, **dict.fromkeys(IMAGERY_CONCEPTS, "C")}
IMAGERY_IMAGES = "nsddata/experiments/nsdimagery/rawtargetimages"


class _NsdExperimentResolver(StimulusResolver):
    """Shared: find a file of NSD's download layout from the dataset folder."""

    def find(self, relative: str, option: str | None = None, required: bool = True) -> Path | None:
        if option and option in self.opts:
            path = self.dataset_path(self.opts[option])
            if not path.exists():
                raise MissingInputError(f"given with --stimuli {self.kind}:{option}= but does not exist", path)
            return path
        for prefix in PREFIXES:
            path = self.dataset_path(prefix + relative)
            if path.exists():
                return path.resolve()
        if not required:
            return None
        looked = ", ".join(str(self.dataset_path(p + relative)) for p in PREFIXES)
        raise MissingInputError(f"{Path(relative).name} not found (looked in {looked})"
                                + (f"; give it with --stimuli {self.kind}:{option}=PATH" if option else ""),
                                self.bids_dir)


@register
class NsdSyntheticResolver(_NsdExperimentResolver):
    """NSD-synthetic's 284 images: 220 shared, 64 colour images per participant (h5py, rows read lazily)."""

    kind = "nsdsynthetic"
    summary = ("Each trial's image was read from NSD-synthetic's nsdsynthetic_stimuli.hdf5 (images 1-220) or the "
               "participant's nsdsynthetic_colorstimuli_subjNN.hdf5 (221-284), centre-cropped to a square.")
    columns = ("stim_id", "image_number")
    options = {
        "folder": f"folder of the stimulus HDF5 files (default: {SYNTHETIC_DIR} of NSD's download root)",
        "info": "nsdsyntheticimageinformation.csv, for category captions (default: nsddata/experiments/nsdsynthetic/)",
        "gamma": "none (default: the stored values) or sqrt (sqrt(v / 255) * 255, as gifale95/RNC shows them)",
    }

    def __init__(self, bids_dir, params=None) -> None:
        super().__init__(bids_dir, params)
        if self.opts.get("gamma", "none") not in ("none", "sqrt"):
            raise UsageError(f"--stimuli nsdsynthetic: gamma={self.opts['gamma']!r} must be none or sqrt")
        self._bricks: dict[str, tuple[Path, object]] = {}

    def parse(self, stim_id: str) -> tuple[int, str | None]:
        """``(image number, participant or None)`` of an id (BadDataError when it names no NSD-synthetic image)."""
        found = _SYNTHETIC_ID.match(str(stim_id).strip())
        number = int(found.group(1)) if found else 0
        subject = found.group(2) if found else None
        if not found or not 1 <= number <= 284 or (number > SYNTHETIC_SHARED_IMAGES) != (subject is not None):
            raise BadDataError(f"stimulus '{stim_id}' is not an NSD-synthetic image id ('1'..'220', or "
                               "'221_subjNN'..'284_subjNN' for a participant's colour images)", self.bids_dir)
        return number, subject

    def _brick(self, stim_id: str) -> tuple[Path, object, int]:
        number, subject = self.parse(stim_id)
        name = SYNTHETIC_SHARED if subject is None else SYNTHETIC_COLOUR.format(subject=subject)
        folder = self.find(SYNTHETIC_DIR, "folder")
        path = folder / name
        if name not in self._bricks:
            if not path.is_file():
                raise MissingInputError(f"NSD-synthetic stimuli for '{stim_id}' do not exist", path)
            self._bricks[name] = (path, open_image_brick(path))
        path, brick = self._bricks[name]
        row = number - 1 if subject is None else number - SYNTHETIC_SHARED_IMAGES - 1
        if row >= brick.shape[0]:
            raise BadDataError(f"image {number} is row {row + 1} but imgBrick has {brick.shape[0]} rows", path)
        return path, brick, row

    def path(self, stim_id: str) -> Path:
        return self._brick(stim_id)[0]

    def check(self, stim_id: str) -> None:
        self._brick(stim_id)

    def pixels(self, stim_id: str) -> np.ndarray:
        """The stored image, uint8 ``(H, W, 3)`` (greyscale stacked to 3 channels), centre-cropped to a square."""
        path, brick, row = self._brick(stim_id)
        image = np.asarray(brick[row])
        if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
            image = np.moveaxis(image, 0, -1)  # channels first
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise BadDataError(f"image {stim_id} has shape {image.shape}: expected height x width (x 3)", path)
        if image.dtype != np.uint8:
            top = 1.0 if float(np.nanmax(image)) <= 1.0 else 255.0
            image = np.clip(np.asarray(image, np.float64) / top * 255.0, 0, 255).astype(np.uint8)
        height, width = image.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[top:top + side, left:left + side]
        if self.opts.get("gamma") == "sqrt":
            image = (np.sqrt(image / 255.0) * 255.0).astype(np.uint8)
        return np.ascontiguousarray(image)

    def load_image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        return as_float_image(self.pixels(stim_id), size)

    def content_key(self, stim_id: str) -> str:
        from bids_recon.features.cache import content_hash

        return content_hash(self.pixels(stim_id).tobytes())

    def coco_id(self, stim_id: str) -> int | None:
        return None

    @functools.cached_property
    def _subclasses(self) -> dict[int, str]:
        import pandas as pd

        path = self.find(SYNTHETIC_INFO, "info", required=False)
        if path is None:
            return {}
        table = pd.read_csv(path)
        column = next((c for c in ("Image subclass", "Image class") if c in table), None)
        if column is None:
            raise BadDataError(f"no 'Image subclass' column (have: {', '.join(map(str, table.columns))})", path)
        return {k + 1: str(v) for k, v in enumerate(table[column])}  # rows in image order

    def category(self, stim_id: str) -> str | None:
        return self._subclasses.get(self.parse(stim_id)[0])


@register
class NsdImageryResolver(_NsdExperimentResolver):
    """NSD-Imagery's target images by cue letter (sets A and B; set C has none)."""

    kind = "nsdimagery"
    summary = ("Each NSD-Imagery trial's target image (what was seen or imagined) was read from "
               "nsddata/experiments/nsdimagery/rawtargetimages/ by the target's cue letter.")
    columns = ("stim_id", "CONDITION")
    options = {
        "images": f"folder of the target images (default: {IMAGERY_IMAGES} of NSD's download root)",
        "targets": "TSV with columns letter and file (relative to images=) instead of the built-in letter table",
    }

    @staticmethod
    def letter(stim_id: str) -> str:
        """The cue letter of an id: ``imagery-H`` -> ``H``."""
        return str(stim_id).strip().rpartition("-")[2]

    @functools.cached_property
    def targets(self) -> dict[str, str]:
        """Cue letter -> target file (relative to the images folder)."""
        if "targets" not in self.opts:
            return {k: f"set{s}/{name}" for k, (s, name) in IMAGERY_TARGETS.items()}
        from bids_recon.io import read_tsv

        path = self.dataset_path(self.opts["targets"])
        if not path.is_file():
            raise MissingInputError("given with --stimuli nsdimagery:targets= but does not exist", path)
        table = read_tsv(path)
        if "letter" not in table or "file" not in table:
            raise BadDataError("needs columns letter and file", path)
        return dict(zip(table["letter"].astype(str).str.strip(), table["file"].astype(str).str.strip(), strict=True))

    def path(self, stim_id: str) -> Path:
        letter = self.letter(stim_id)
        if letter in IMAGERY_CONCEPTS and letter not in self.targets:
            raise BadDataError(f"stimulus '{stim_id}' is a set C (conceptual) target: NSD-Imagery has no image of it",
                               self.bids_dir)
        if letter not in self.targets:
            raise BadDataError(f"stimulus '{stim_id}': no target image for cue letter {letter!r} (known: "
                               f"{', '.join(sorted(self.targets))})", self.bids_dir)
        folder = self.find(IMAGERY_IMAGES, "images")
        path = folder / self.targets[letter]
        if path.is_file():
            return path
        found = sorted(folder.rglob(Path(self.targets[letter]).name))
        if not found:
            raise MissingInputError(f"target image of '{stim_id}' does not exist", path)
        return found[0]

    def check(self, stim_id: str) -> None:
        self.path(stim_id)

    def load_image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        return read_image_file(self.path(stim_id), stim_id, size)

    def coco_id(self, stim_id: str) -> int | None:
        return None

    def category(self, stim_id: str) -> str | None:
        name = Path(self.targets.get(self.letter(stim_id), "")).name
        return {"bar": "bar", "crs": "cross"}.get(name[:3])


__all__ = ["IMAGERY_CONCEPTS", "IMAGERY_SETS", "IMAGERY_TARGETS", "NsdImageryResolver", "NsdSyntheticResolver"]
