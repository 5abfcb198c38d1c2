"""``files``: an events column names an image file, found in the stimuli folders (BIDS, THINGS, BOLD5000, NOD)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.design.split import matches
from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.features.resolvers.base import (
    StimulusResolver,
    check_image_file,
    read_image_file,
    synset_of,
)
from bids_recon.features.resolvers.registry import register

_SCENE_NAME = re.compile(r"^([A-Za-z]+)\d+\.(?:jpe?g|png)$")

#: Extensions indexed for the bare-file-name fallback.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def excluded_rows(events: pd.DataFrame, spec: str, kind: str, source: Path | None) -> np.ndarray:
    """Rows matched by ``COLUMN:VALUE[|VALUE]`` (modelled in the GLM, never decoded: catch images)."""
    column, sep, values = spec.partition(":")
    wanted = [v for v in values.split("|") if v]
    if not sep or not column or not wanted:
        from bids_recon.errors import UsageError

        raise UsageError(f"--stimuli {kind}: exclude={spec!r} must be COLUMN:VALUE[|VALUE], e.g. "
                         "exclude=trial_type:catch")
    if column not in events:
        raise BadDataError(f"events have no '{column}' column for the resolver's exclude={spec} (have: "
                           f"{', '.join(map(str, events.columns))})", source)
    return matches(events[column], wanted)


@register
class FilesResolver(StimulusResolver):
    """A path column resolved in the dataset's stimuli folder, then in each ``dirs`` folder, then by bare name.

    An events value is a path relative to a stimuli folder (``cat.png``, ``dog/dog_12s.jpg``); absolute paths and
    ``..`` are refused, as are symlinks that lead outside the folder they are in. When no folder holds it at
    that relative path, the file is looked up by its bare name in every folder, recursively (BOLD5000 names
    images by bare file name inside category folders; NOD names COCO images ``coco/000000124419.jpg``).
    """

    kind = "files"
    summary = "Each trial's image was the file its events row names, read with Pillow and converted to RGB."
    columns = ("stim_file", "file_path", "condition", "ImgName")
    options = {"exclude": "COLUMN:VALUE[|VALUE]: rows modelled in the GLM but never decoded (catch images)"}

    @classmethod
    def trial_rows(cls, events, column="", options=None, source=None):
        rows = super().trial_rows(events, column, options, source)
        spec = (options or {}).get("exclude")
        if spec:
            hit = excluded_rows(events, spec, cls.kind, source)
            rows["decode"] = ~hit[rows["row"].to_numpy()]
        return rows

    def _boundaries(self) -> list[tuple[Path, Path]]:
        """(folder, the boundary a file found through it must stay inside)."""
        dataset = self.bids_dir.resolve()
        roots = self.roots
        return [(roots[0], dataset)] + [(root, root) for root in roots[1:]]

    @functools.cached_property
    def _by_name(self) -> dict[str, list[Path]]:
        index: dict[str, list[Path]] = {}
        for root, boundary in self._boundaries():
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*")):
                if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and _within(path.resolve(), boundary):
                    index.setdefault(path.name, []).append(path.resolve())
        return index

    def path(self, stim_id: str) -> Path:
        """The image file of ``stim_id`` (a path relative to a stimuli folder).

        Raises
        ------
        BadDataError
            The name is absolute or leads outside the folders (``../``, symlinks), or a bare name matches several
            files.
        MissingInputError
            No folder holds the file.
        """
        if stim_id not in self._found:
            self._found[stim_id] = self._path(stim_id)
        return self._found[stim_id]

    @functools.cached_property
    def _found(self) -> dict[str, Path]:
        return {}

    def _path(self, stim_id: str) -> Path:
        relative = Path(str(stim_id))
        folders = ", ".join(str(r) for r, _ in self._boundaries())
        if relative.is_absolute() or ".." in relative.parts:
            raise BadDataError(f"stimulus '{stim_id}' must be a path relative to {self.params.folder}/ (or to a "
                               "--stimuli-dir folder)", self.roots[0])
        for root, boundary in self._boundaries():
            candidate = root / relative
            resolved = candidate.resolve()
            if candidate.exists() and not _within(resolved, boundary):
                raise BadDataError(f"stimulus '{stim_id}' leads outside the dataset (to {resolved})"
                                   if boundary == self.bids_dir.resolve() else
                                   f"stimulus '{stim_id}' leads outside {boundary} (to {resolved})", candidate)
            if resolved.is_file():
                return resolved
        found = self._by_name.get(relative.name, [])
        if len(found) > 1:  # prefer the files whose folders end like the events value
            tail = [p for p in found if p.parts[-len(relative.parts):] == relative.parts]
            found = tail or found
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise BadDataError(f"stimulus '{stim_id}' matches {len(found)} files by name ({found[0]}, {found[1]}): "
                               "name it by its path relative to a stimuli folder", found[0])
        raise MissingInputError(f"stimulus '{stim_id}' not found (looked in {folders}, also by file name)",
                                self.roots[0] / relative)

    def check(self, stim_id: str) -> None:
        check_image_file(self.path(stim_id), stim_id)

    def load_image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        return read_image_file(self.path(stim_id), stim_id, size)

    def category(self, stim_id: str) -> str | None:
        """The folder the image is named in (THINGS concept ``dog/dog_12s.jpg``), or its ImageNet synset's words."""
        relative = Path(str(stim_id))
        if self.coco_id(stim_id) is not None:
            return None  # COCO images have captions, and their folder (coco/, train2017/) is no category
        name = relative.parent.name if len(relative.parts) > 1 else ""
        synset = synset_of(name) or synset_of(relative.name)
        if synset:
            return self.synsets.get(synset)
        if name:
            return name.replace("_", " ")
        scene = _SCENE_NAME.match(relative.name)  # BOLD5000's scene images: kitchen3.jpg, elevatorOutside2.jpg
        return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", scene.group(1)).lower() if scene else None
