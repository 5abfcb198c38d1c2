"""Label volumes as datasets ship them: which voxels of a label image an ROI takes (``--roi-mask NAME=PATH:LABELS``).

Datasets give their ROIs as integer label volumes: NSD's ``streams.nii.gz`` codes -1 outside cortex, 0 for "in no
ROI" and 1..7 for its streams, named in a FreeSurfer colour table (``streams.mgz.ctab``: ``1 early``, ``5
ventral``...); a binary mask codes 0/1. ``LABELS`` is a comma list of label numbers or names (``1,2``, ``early``,
``ventral,lateral``), or ``>0`` (every positive label, the default). Voxels are selected with ``== k`` or ``> 0``,
never ``!= 0`` (that would take NSD's -1, the voxels outside cortex).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_recon.errors import BadDataError, MissingInputError

#: ``LABELS`` that select every positive label (also the meaning of no ``LABELS``).
POSITIVE = (">0", "")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.+\-]*$")
_NUMBER = re.compile(r"^-?\d+$")


def split_roi_spec(spec: str) -> tuple[str, str]:
    """``PATH[:LABELS]`` -> ``(PATH, LABELS)``; the last ``:`` separates them (``LABELS`` never contains ``/``)."""
    path, sep, labels = str(spec).rpartition(":")
    if not sep or "/" in labels or "\\" in labels:
        return str(spec), ""
    return path, labels.strip()


def label_problem(labels: str) -> str | None:
    """What is wrong with a ``LABELS`` text (``None`` when it parses): numbers, names or ``>0``, comma separated."""
    if labels.strip() in POSITIVE:
        return None
    for token in (t.strip() for t in labels.split(",")):
        if not token:
            return f"'{labels}' has an empty label (LABELS is e.g. 1,2 or early,ventral or >0)"
        if token in POSITIVE or _NUMBER.match(token) or _NAME.match(token):
            continue
        return f"label '{token}' is neither a number nor a name (LABELS is e.g. 1,2 or early,ventral or >0)"
    return None


@dataclass(frozen=True)
class LabelSelection:
    """Which labels an ROI takes: ``positive`` (every label > 0) or the label numbers in ``values``."""

    positive: bool
    values: tuple[int, ...] = ()
    names: tuple[str, ...] = ()
    table: Path | None = None

    def select(self, data: np.ndarray) -> np.ndarray:
        """Boolean mask of the voxels with a selected label (``> 0`` or ``== k``; never ``!= 0``)."""
        values = np.asarray(data)
        if np.issubdtype(values.dtype, np.floating):
            values = np.where(np.isfinite(values), np.rint(values), 0)
        if self.positive:
            return values > 0
        return np.isin(values, np.asarray(self.values, dtype=values.dtype))

    def describe(self) -> str:
        """``labels > 0`` or ``labels 1 (early), 5 (ventral)``, for the sidecars and the methods text."""
        if self.positive:
            return "labels > 0"
        named = dict(zip(self.values, self.names, strict=False)) if self.names else {}
        return "label" + ("s " if len(self.values) > 1 else " ") + ", ".join(
            f"{v} ({named[v]})" if named.get(v) else str(v) for v in self.values)


def read_color_table(path: Path) -> dict[str, int]:
    """Label name -> number from a FreeSurfer colour table (``index name [R G B A]`` per line, ``#`` comments) or
    a BIDS ``dseg.tsv`` (columns ``index``, ``name``).

    Raises
    ------
    BadDataError
        A line that does not start with a number and a name (the message names the file and line).
    """
    path = Path(path)
    names: dict[str, int] = {}
    lines = path.read_text(errors="replace").splitlines()
    if path.suffix == ".tsv" and lines and "\t" in lines[0] and {"index", "name"} <= set(lines[0].split("\t")):
        header = lines[0].split("\t")
        at_index, at_name = header.index("index"), header.index("name")
        rows = [(n, line.split("\t")) for n, line in enumerate(lines[1:], start=2) if line.strip()]
        parsed = [(n, cells[at_index], cells[at_name]) for n, cells in rows]
    else:
        parsed = [(n, *(line.split() + ["", ""])[:2]) for n, line in enumerate(lines, start=1)
                  if line.strip() and not line.lstrip().startswith("#")]
    for number, index, name in parsed:
        if not _NUMBER.match(str(index).strip()) or not str(name).strip():
            raise BadDataError(f"line {number} is not 'INDEX NAME' (a colour table line)", path)
        names[str(name).strip().lower()] = int(index)
    return names


def color_table_for(roi_file: Path) -> Path | None:
    """The colour table naming the labels of ``roi_file``, where datasets keep it.

    Looked for, with ``STEM`` the file name without ``.nii[.gz]``/``.mgz``: beside the file (``STEM.mgz.ctab``,
    ``STEM.ctab``, ``STEM.tsv``), then NSD's layout, ``nsddata/freesurfer/fsaverage/label/STEM.mgz.ctab`` found by
    walking up from the file (ROIs live in ``nsddata/ppdata/subjNN/func1pt8mm/roi/``).
    """
    roi_file = Path(roi_file)
    stem = re.sub(r"\.(nii\.gz|nii|mgz|mgh)$", "", roi_file.name)
    for name in (f"{stem}.mgz.ctab", f"{stem}.ctab", f"{stem}.nii.gz.ctab", f"{stem}.tsv", f"{stem}_dseg.tsv"):
        if (roi_file.parent / name).is_file():
            return roi_file.parent / name
    for parent in roi_file.resolve().parents:
        candidate = parent / "freesurfer" / "fsaverage" / "label" / f"{stem}.mgz.ctab"
        if candidate.is_file():
            return candidate
    return None


def parse_labels(labels: str | int | None, roi_file: Path | None = None) -> LabelSelection:
    """The selection ``LABELS`` means for ``roi_file`` (names are looked up in its colour table).

    Raises
    ------
    MissingInputError
        Label names but no colour table found (the message says where it looked and how to use numbers).
    BadDataError
        A name that is not in the table (the message lists the names there are).
    """
    if labels is None or (isinstance(labels, str) and labels.strip() in POSITIVE):
        return LabelSelection(positive=True)
    if isinstance(labels, int | np.integer):
        return LabelSelection(positive=False, values=(int(labels),))
    tokens = [t.strip() for t in str(labels).split(",") if t.strip()]
    if any(t in POSITIVE for t in tokens):
        return LabelSelection(positive=True)
    named = [t for t in tokens if not _NUMBER.match(t)]
    table_path, table = None, {}
    if named:
        table_path = color_table_for(roi_file) if roi_file is not None else None
        if table_path is None:
            stem = Path(roi_file).name if roi_file is not None else "the ROI file"
            raise MissingInputError(
                f"label names {', '.join(named)} need a colour table naming the labels of {stem} (looked for "
                "STEM.mgz.ctab, STEM.ctab or STEM.tsv beside it, and NSD's nsddata/freesurfer/fsaverage/label/): "
                "put one there or give label numbers (e.g. :1,5)", roi_file)
        table = read_color_table(table_path)
        unknown = [t for t in named if t.lower() not in table]
        if unknown:
            raise BadDataError(f"label(s) {', '.join(unknown)} of {Path(roi_file).name} are not in the colour table "
                               f"(it has: {', '.join(sorted(table, key=table.get))})", table_path)
    values = tuple(int(t) if _NUMBER.match(t) else table[t.lower()] for t in tokens)
    by_number = {v: k for k, v in table.items()}
    return LabelSelection(positive=False, values=values, names=tuple(by_number.get(v, "") for v in values),
                          table=table_path)


__all__ = ["LabelSelection", "color_table_for", "label_problem", "parse_labels", "read_color_table",
           "split_roi_spec"]
