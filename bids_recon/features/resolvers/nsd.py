"""``nsd``: the Natural Scenes Dataset's 73k ids, read lazily from ``nsd_stimuli.hdf5:/imgBrick``.

NSD's events name each trial's image by ``73k_id`` (1-based, like ``73KID`` in its behavioural files) or, in
some derived tables, ``nsdId`` (0-based, as in ``nsd_stim_info_merged.csv``); row ``73k_id - 1`` of
``imgBrick`` (73000 x 425 x 425 x 3, uint8) is the image. Stimulus ids here are the 1-based 73k id as text
(``"2951"``). The files are found where NSD's download puts them, beside the raw dataset
(``nsddata_rawdata/`` next to ``nsddata_stimuli/`` and ``nsddata/``), unless options name them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.design.table import ROW_COLUMNS
from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.features.resolvers.base import StimulusResolver, as_float_image, missing_value
from bids_recon.features.resolvers.registry import register

#: Where NSD's files are looked for when no option names them, relative to the dataset folder: the raw dataset
#: beside NSD's other folders (``nsddata_rawdata``), or NSD's download root itself (imported betas need no raw data).
DEFAULT_PATHS = {
    "hdf5": ("../nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5",
             "stimuli/nsd/nsd_stimuli.hdf5", "stimuli/nsd_stimuli.hdf5"),
    "info": ("../nsddata/experiments/nsd/nsd_stim_info_merged.csv", "nsddata/experiments/nsd/nsd_stim_info_merged.csv",
             "stimuli/nsd/nsd_stim_info_merged.csv", "stimuli/nsd_stim_info_merged.csv"),
    "expdesign": ("../nsddata/experiments/nsd/nsd_expdesign.mat", "nsddata/experiments/nsd/nsd_expdesign.mat",
                  "stimuli/nsd/nsd_expdesign.mat", "stimuli/nsd_expdesign.mat"),
}
#: Columns whose ids count from 0 (all others, 73k_id and 73KID, count from 1).
ZERO_BASED = ("nsdId",)
#: Rows of imgBrick read at once (425 x 425 x 3 bytes each).
READ_BLOCK = 64


def _row_number(value: object, column: str, base: int, line: int, source: Path | None) -> int | None:
    try:
        number = float(str(value).strip())
    except ValueError:
        number = float("nan")
    if not np.isfinite(number) or number != int(number):
        raise BadDataError(f"'{column}' {value!r} on line {line} is not an integer image id", source)
    number = int(number)
    if base == 1 and number == 0:
        return None  # a blank trial: no image
    if number < base:
        raise BadDataError(f"'{column}' {value!r} on line {line} is below the first image id ({base})", source)
    return number - base + 1



def open_image_brick(path: Path):
    """The ``imgBrick`` dataset of one of NSD's stimulus HDF5 files, ``(n_images, height, width, 3)`` uint8, read
    lazily (h5py); BadDataError naming the file when it is not HDF5, lacks the dataset or has another shape."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise BadDataError(f"not an HDF5 file h5py can read ({exc})", path) from exc
    if "imgBrick" not in handle:
        raise BadDataError(f"no 'imgBrick' dataset (has: {', '.join(handle)})", path)
    brick = handle["imgBrick"]
    if brick.ndim != 4 or brick.shape[3] != 3:
        raise BadDataError(f"imgBrick has shape {brick.shape}, expected (n_images, height, width, 3)", path)
    return brick

@register
class NsdResolver(StimulusResolver):
    """73k ids into ``nsd_stimuli.hdf5:/imgBrick`` (h5py; only the rows used are read, never the 37 GB whole)."""

    kind = "nsd"
    summary = ("Each trial's image was read from NSD's nsd_stimuli.hdf5 (imgBrick, 425 x 425 px) by its 73k id; "
               "COCO ids and the shared1000 flag from nsd_stim_info_merged.csv.")
    columns = ("73k_id", "73KID", "nsdId")
    options = {
        "hdf5": "nsd_stimuli.hdf5 (default: ../nsddata_stimuli/stimuli/nsd/ beside the raw dataset, or stimuli/)",
        "info": "nsd_stim_info_merged.csv (default: ../nsddata/experiments/nsd/)",
        "expdesign": "nsd_expdesign.mat, for sharedix when the stim info is absent (default: beside the stim info)",
        "base": "0 or 1: the first id of the stimulus column (default: 0 for nsdId, else 1)",
    }

    @classmethod
    def _base(cls, column: str, options: dict[str, str] | None) -> int:
        base = (options or {}).get("base")
        if base is None:
            return 0 if column in ZERO_BASED else 1
        if base not in ("0", "1"):
            raise UsageError(f"--stimuli nsd: base={base!r} must be 0 or 1")
        return int(base)

    @classmethod
    def trial_rows(cls, events, column="", options=None, source=None):
        name = cls.stimulus_column(events, column, source)
        base = cls._base(name, options)
        rows, written, ids = [], [], []
        values = events[name]
        for row in np.flatnonzero(~missing_value(values)):
            number = _row_number(values.iloc[row], name, base, int(row) + 2, source)
            if number is not None:
                rows.append(int(row))
                written.append(str(values.iloc[row]).strip())
                ids.append(str(number))
        return pd.DataFrame({"row": rows, "stim_file": written, "stim_id": ids,
                             "decode": np.ones(len(rows), dtype=bool)}, columns=list(ROW_COLUMNS))

    # -- files ---------------------------------------------------------------------------------------------------

    def _find(self, what: str, required: bool = True) -> Path | None:
        if what in self.opts:
            path = self.dataset_path(self.opts[what])
            if not path.is_file():
                raise MissingInputError(f"NSD {what} file given with --stimuli nsd:{what}= does not exist", path)
            return path
        for candidate in DEFAULT_PATHS[what]:
            path = self.dataset_path(candidate)
            if path.is_file():
                return path.resolve()
        if not required:
            return None
        looked = ", ".join(str(self.dataset_path(c)) for c in DEFAULT_PATHS[what])
        raise MissingInputError(f"NSD {Path(DEFAULT_PATHS[what][0]).name} not found (looked in {looked}); give it "
                                f"with --stimuli nsd:{what}=PATH", self.bids_dir)

    @functools.cached_property
    def _images(self):
        path = self._find("hdf5")
        return path, open_image_brick(path)

    def path(self, stim_id: str) -> Path:
        """The HDF5 file (every stimulus is a row of it)."""
        return self._images[0]

    def _row(self, stim_id: str) -> int:
        path, brick = self._images
        try:
            number = int(str(stim_id))
        except ValueError:
            raise BadDataError(f"stimulus '{stim_id}' is not a 73k id", path) from None
        if not 1 <= number <= brick.shape[0]:
            raise BadDataError(f"73k id {number} is beyond the {brick.shape[0]} images of imgBrick (ids count from 1)",
                               path)
        return number - 1

    def check(self, stim_id: str) -> None:
        self._row(stim_id)

    def _pixels(self, rows: list[int]) -> dict[int, np.ndarray]:
        brick = self._images[1]
        out = {}
        unique = sorted(set(rows))
        for start in range(0, len(unique), READ_BLOCK):
            block = unique[start:start + READ_BLOCK]
            data = brick[block] if len(block) > 1 else brick[block[0]][None]
            out.update(zip(block, data, strict=True))
        return out

    def load_image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        row = self._row(stim_id)
        return as_float_image(self._pixels([row])[row], size)

    def load_images(self, stim_ids, size: int) -> np.ndarray:
        stim_ids = list(stim_ids)
        rows = [self._row(s) for s in stim_ids]
        out = np.zeros((len(rows), size, size, 3), np.float32)
        order = np.argsort(rows, kind="stable")
        for start in range(0, len(order), READ_BLOCK):  # a block of rows in memory at a time
            chunk = order[start:start + READ_BLOCK]
            pixels = self._pixels([rows[i] for i in chunk])
            for i in chunk:
                out[i] = as_float_image(pixels[rows[i]], size)
        return out

    def content_key(self, stim_id: str) -> str:
        from bids_recon.features.cache import content_hash

        row = self._row(stim_id)
        return content_hash(np.ascontiguousarray(self._pixels([row])[row]).tobytes())

    # -- stim info -----------------------------------------------------------------------------------------------

    @functools.cached_property
    def info(self) -> pd.DataFrame:
        """``nsd_stim_info_merged.csv`` indexed by the 1-based 73k id (MissingInputError when absent)."""
        path = self._find("info")
        try:
            table = pd.read_csv(path)
        except Exception as exc:  # pandas raises several parser errors
            raise BadDataError(f"cannot read the NSD stim info ({exc})", path) from exc
        table = table.drop(columns=[c for c in table.columns if str(c).startswith("Unnamed")])  # the saved index
        if "nsdId" not in table:
            raise BadDataError(f"no 'nsdId' column (has: {', '.join(map(str, table.columns))})", path)
        table.index = table["nsdId"].astype(int) + 1
        table.attrs["path"] = path
        return table

    def coco_id(self, stim_id: str) -> int | None:
        info = self.info
        if "cocoId" not in info:
            raise BadDataError("no 'cocoId' column to join captions on", info.attrs["path"])
        number = int(stim_id)
        if number not in info.index:
            raise BadDataError(f"73k id {number} is not in the stim info", info.attrs["path"])
        return int(info.at[number, "cocoId"])

    def named_test_set(self, name: str) -> set[str] | None:
        """``shared1000``: the images every participant saw (stim info ``shared1000``, else ``sharedix``)."""
        if name != "shared1000":
            return None
        info_path = self._find("info", required=False)
        if info_path is not None and "shared1000" in self.info:
            flags = self.info["shared1000"].astype(str).str.strip().str.lower().isin(["true", "1", "1.0"])
            return {str(i) for i in self.info.index[flags.to_numpy()]}
        path = self._find("expdesign", required=False)
        if path is None:
            looked = ", ".join(str(self.dataset_path(c)) for c in DEFAULT_PATHS["info"] + DEFAULT_PATHS["expdesign"])
            raise MissingInputError(f"--test-split shared1000 needs nsd_stim_info_merged.csv (shared1000) or "
                                    f"nsd_expdesign.mat (sharedix); neither found (looked in {looked})", self.bids_dir)
        return {str(int(i)) for i in read_sharedix(path)}


def read_sharedix(path: Path) -> np.ndarray:
    """``sharedix`` of ``nsd_expdesign.mat`` (1-based 73k ids of the shared images), MATLAB v5 or v7.3."""
    from bids_recon.io import read_matlab

    values = read_matlab(Path(path), ["sharedix"]).get("sharedix")
    if values is None or np.asarray(values).size == 0:
        raise BadDataError("no 'sharedix' variable", path)
    return np.asarray(values).ravel().astype(int)
