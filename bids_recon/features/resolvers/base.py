"""The interface every stimulus resolver implements, and what they share (option parsing, image decoding)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from PIL import Image

from bids_recon.design.table import ROW_COLUMNS
from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.features.params import StimulusParams
from bids_recon.features.resolvers.registry import parse_resolver


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: greyscale, palette, CMYK, 16-bit and RGBA (alpha over white) included."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
        img = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        array = np.asarray(img, dtype=np.float64)
        top = 1.0 if array.max() <= 1.0 else 255.0
        img = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def as_float_image(rgb: Image.Image | np.ndarray, size: int | None) -> np.ndarray:
    """RGB pixels (a Pillow image or a uint8 array ``(H, W, 3)``) as float32 in [0, 1], resized to ``size``."""
    if isinstance(rgb, np.ndarray):
        rgb = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    if size is not None and rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.float32) / 255.0


def read_image_file(path: Path, stim_id: str, size: int | None) -> np.ndarray:
    """One image file as RGB float32 in [0, 1] (``BadDataError`` naming the file when it is not an image)."""
    try:
        with Image.open(path) as img:
            return as_float_image(to_rgb(img), size)
    except OSError as exc:
        raise BadDataError(f"stimulus '{stim_id}': cannot read image ({exc})", path) from exc


def check_image_file(path: Path, stim_id: str) -> None:
    """Read the header only: fast enough for tens of thousands of stimuli."""
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018 - reading the header is the check
    except OSError as exc:
        raise BadDataError(f"stimulus '{stim_id}' is not an image Pillow can read ({exc})", path) from exc


def missing_value(values: pd.Series) -> np.ndarray:
    """Cells that name no stimulus: NaN, empty, ``n/a``."""
    text = values.astype(str).str.strip()
    return (values.isna() | text.isin(["", "n/a", "nan", "NaN", "None"])).to_numpy()


class StimulusResolver:
    """What bids_recon needs to know about how a dataset names and stores its images (subclass it, then decorate
    with :func:`bids_recon.features.resolvers.register`).

    A resolver answers: which events rows are trials and their stimulus id (:meth:`trial_rows`), whether a
    stimulus exists and is an image (:meth:`check`, header-level), its pixels (:meth:`load_image`,
    :meth:`load_images`: RGB float32 in [0, 1], any source format or size), a stable content key for the feature
    cache (:meth:`content_key`), and what captions can be joined on (:meth:`coco_id`, :meth:`category`), plus the
    named test sets it knows (:meth:`named_test_set`). Construction reads no file.

    Parameters
    ----------
    bids_dir : Path
        Root of the raw dataset; relative paths in the settings are relative to it.
    params : StimulusParams, optional
        The ``[workflow.stimuli]`` settings (the defaults when omitted).
    """

    #: ``--stimuli`` name
    kind: ClassVar[str] = ""
    #: one line for the documentation
    summary: ClassVar[str] = ""
    #: events columns naming the stimulus, tried in order when ``column`` is not set
    columns: ClassVar[tuple[str, ...]] = ()
    #: ``KIND:KEY=VALUE`` options: name -> what it does
    options: ClassVar[dict[str, str]] = {}

    def __init__(self, bids_dir: Path | str, params: StimulusParams | None = None) -> None:
        self.bids_dir = Path(bids_dir)
        self.params = params or StimulusParams(resolver=self.kind)
        kind, self.opts = parse_resolver(self.params.resolver)
        if kind != self.kind:
            raise UsageError(f"resolver '{self.kind}' built from settings of '{kind}'")

    # -- paths ---------------------------------------------------------------------------------------------------

    def dataset_path(self, value: str) -> Path:
        """``value`` as a path: absolute as given, else relative to the raw dataset."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.bids_dir / path

    @functools.cached_property
    def synsets(self) -> dict[str, str]:
        """ImageNet synset -> its first word, from the ``synset_words`` setting (empty without one)."""
        return read_synset_words(self.dataset_path(self.params.synset_words)) if self.params.synset_words else {}

    @property
    def roots(self) -> list[Path]:
        """Folders searched for image files: the dataset's ``folder``, then ``dirs`` (resolved)."""
        return [(self.bids_dir / self.params.folder).resolve()] + [self.dataset_path(d).resolve()
                                                                    for d in self.params.dirs]

    # -- rows ----------------------------------------------------------------------------------------------------

    @classmethod
    def stimulus_column(cls, events: pd.DataFrame, column: str, source: Path | None = None) -> str:
        """The events column naming the stimulus: ``column`` if set, else the first of :attr:`columns` present.

        Raises
        ------
        BadDataError
            The column is absent (the message lists the columns there are and how to name another).
        """
        wanted = [column] if column else list(cls.columns)
        for name in wanted:
            if name in events:
                return name
        what = f"'{column}' column" if column else "column " + " or ".join(f"'{c}'" for c in cls.columns)
        raise BadDataError(f"events have no {what} naming the stimulus (have: {', '.join(map(str, events.columns))}); "
                           "name the stimulus column with --stimulus-column", source)

    @classmethod
    def normalise_id(cls, value: object, column: str) -> str:
        """The stimulus id of an events cell (text as written, by default)."""
        return str(value).strip()

    @classmethod
    def trial_rows(cls, events: pd.DataFrame, column: str = "", options: dict[str, str] | None = None,
                   source: Path | None = None) -> pd.DataFrame:
        """Events rows that are trials (each gets a GLM regressor) and whether each is decoded.

        Parameters
        ----------
        events : pandas.DataFrame
            A run's checked events (:func:`bids_recon.design.events.load_events`: sorted by onset).
        column : str
            ``--stimulus-column`` (empty: :attr:`columns`).
        options : dict
            The resolver's ``KIND:KEY=VALUE`` options.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`ROW_COLUMNS`: ``row`` (index into ``events``), ``stim_file`` (the cell as written),
            ``stim_id`` (normalised), ``decode`` (False for presented images that are modelled but neither trained
            on nor tested: catch images, one-back repeats).
        """
        name = cls.stimulus_column(events, column, source)
        keep = ~missing_value(events[name])
        rows = np.flatnonzero(keep)
        written = events[name].to_numpy()[rows]
        ids = [cls.normalise_id(v, name) for v in written]
        return pd.DataFrame({"row": rows, "stim_file": [str(v).strip() for v in written], "stim_id": ids,
                             "decode": np.ones(len(rows), dtype=bool)}, columns=list(ROW_COLUMNS))

    # -- images (subclasses implement) ---------------------------------------------------------------------------

    def path(self, stim_id: str) -> Path:
        """The file that holds ``stim_id``'s image (raises MissingInputError or BadDataError)."""
        raise NotImplementedError

    def check(self, stim_id: str) -> None:
        """Check, cheaply (headers, bounds), that ``stim_id`` names a readable image."""
        raise NotImplementedError

    def check_image(self, stim_id: str) -> Path:
        """:meth:`check` then :meth:`path` (the drop-in of the old ``StimulusResolver.check_image``)."""
        self.check(stim_id)
        return self.path(stim_id)

    def load_image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        """One stimulus as RGB floats in [0, 1], shape ``(size, size, 3)`` (or its own size)."""
        raise NotImplementedError

    def load_images(self, stim_ids: Iterable[str], size: int) -> np.ndarray:
        """Several stimuli; returns ``(n_stimuli, size, size, 3)`` float32 in [0, 1]."""
        stim_ids = list(stim_ids)
        if not stim_ids:
            return np.zeros((0, size, size, 3), np.float32)
        return np.stack([self.load_image(s, size) for s in stim_ids])

    def content_key(self, stim_id: str) -> str:
        """A stable digest of the stimulus's stored content (the feature cache's key)."""
        from bids_recon.features.cache import content_hash

        return content_hash(self.path(stim_id).read_bytes())

    # -- what captions and splits can be joined on ---------------------------------------------------------------

    def coco_id(self, stim_id: str) -> int | None:
        """The stimulus's COCO image id, when it is a COCO image (captions are joined on it)."""
        return coco_id_from_name(Path(str(stim_id)).name)

    def category(self, stim_id: str) -> str | None:
        """A category name for a caption of last resort (THINGS concept, ImageNet synset), or ``None``."""
        return None

    def named_test_set(self, name: str) -> set[str] | None:
        """Stimulus ids of a test set this resolver knows by ``name`` (NSD: ``shared1000``), else ``None``."""
        return None

    def describe(self) -> str:
        """One sentence for the methods text."""
        return self.summary


_COCO_2014 = re.compile(r"COCO_(?:train|val)(?:2014|2017)_0*(\d+)\.\w+$", re.IGNORECASE)
_COCO_2017 = re.compile(r"^(\d{12})\.(?:jpe?g|png)$", re.IGNORECASE)


def coco_id_from_name(name: str) -> int | None:
    """COCO image id from a file name: ``COCO_train2014_000000420713.jpg`` or ``000000124419.jpg`` (2017)."""
    for pattern in (_COCO_2014, _COCO_2017):
        found = pattern.search(name)
        if found:
            return int(found.group(1))
    return None


_SYNSET = re.compile(r"(n\d{8})(?:_\d+)?")


def synset_of(text: str) -> str | None:
    """The ImageNet synset (``n01440764``) a folder or file name starts with, else ``None``."""
    found = _SYNSET.match(text)
    return found.group(1) if found else None


def read_synset_words(path: Path) -> dict[str, str]:
    """``n01440764 tench, Tinca tinca`` per line -> ``{"n01440764": "tench"}`` (the first name).

    Raises
    ------
    MissingInputError, BadDataError
        The file does not exist, or a line is not ``SYNSET WORDS``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("synset words file does not exist", path)
    words: dict[str, str] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        found = _SYNSET_LINE.search(line)  # ILSVRC's "n01440764 tench, Tinca tinca"; also "1 n01440764: tench"
        if found is None:
            raise BadDataError(f"line {number} is not 'SYNSET WORDS' ({line[:60]!r})", path)
        words[found.group(1)] = found.group(2).split(",")[0].strip()
    return words


_SYNSET_LINE = re.compile(r"\b(n\d{8})\b[\s,:;=\t]+(\S.*)$")
