"""``imagenet``: the Kamitani lab's tables (GOD ds001246, Deeprecon ds001506) name ImageNet images.

``stimulus_name`` is the file stem (``n03626115_19498``); ``stimulus_id`` is the same as a float
(``3626115.019498``: synset number . image number, six digits). GOD marks rows ``event_type`` ``rest`` or
``stimulus``; Deeprecon ``1`` (stimulus), ``2`` (one-back repetition) and ``-1``/``-2``/``-3`` (rest). Rest rows are
not trials. A one-back repetition (Deeprecon's ``2``, or in GOD a stimulus row showing the same image as the
stimulus row before it) is a presented image: it gets a GLM regressor but is neither trained on nor tested.
Images are ``<name>.<ext>`` anywhere under the stimuli folders (ImageNet's ``.JPEG``, Deeprecon's shape and letter
images: any format Pillow reads).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.design.table import ROW_COLUMNS
from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.features.resolvers.base import (
    StimulusResolver,
    check_image_file,
    missing_value,
    read_image_file,
    synset_of,
)
from bids_recon.features.resolvers.files import IMAGE_EXTENSIONS
from bids_recon.features.resolvers.registry import register

#: ``event_type`` values of stimulus rows and of one-back repetition rows.
STIMULUS_EVENTS = ("stimulus", "1", "1.0")
REPEAT_EVENTS = ("2", "2.0", "repetition", "repeat")


def name_from_id(value: object) -> str:
    """``3626115.019498`` -> ``n03626115_19498``; an integer id (Deeprecon's shapes) stays as written."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if number == int(number) and "." not in text.rstrip("0").rstrip("."):
        return str(int(number))
    synset, _, image = f"{number:.6f}".partition(".")
    return f"n{int(synset):08d}_{int(image)}"


@register
class ImagenetResolver(StimulusResolver):
    """Kamitani-lab events (``event_type``, ``stimulus_name``/``stimulus_id``) -> ``<name>.JPEG`` in the stimuli
    folders; rest rows dropped, one-back repeats modelled but not decoded."""

    kind = "imagenet"
    summary = ("Each trial's image was the ImageNet file named by its stimulus_name (or stimulus_id); rest blocks "
               "were not modelled and one-back repetition blocks were modelled but not decoded.")
    columns = ("stimulus_name", "stimulus_id")
    options: dict[str, str] = {}

    @classmethod
    def normalise_id(cls, value, column):
        return name_from_id(value) if column == "stimulus_id" else str(value).strip()

    @classmethod
    def trial_rows(cls, events, column="", options=None, source=None):
        name = cls.stimulus_column(events, column, source)
        kind = events["event_type"].astype(str).str.strip().str.lower() if "event_type" in events else None
        has_name = ~missing_value(events[name])
        if kind is None:
            shown = has_name
            repeat_marked = np.zeros(len(events), dtype=bool)
        else:
            shown = kind.isin(STIMULUS_EVENTS + REPEAT_EVENTS).to_numpy()
            repeat_marked = kind.isin(REPEAT_EVENTS).to_numpy()
            unnamed = np.flatnonzero(shown & ~has_name)
            if len(unnamed):
                raise BadDataError(f"line {unnamed[0] + 2}: a stimulus event (event_type "
                                   f"{events['event_type'].iloc[unnamed[0]]!r}) has no '{name}'", source)
        rows = np.flatnonzero(shown)
        ids = [cls.normalise_id(v, name) for v in events[name].to_numpy()[rows]]
        decode = ~repeat_marked[rows]
        for i in range(1, len(rows)):  # GOD: the one-back repeat is the same image as the stimulus row before it
            if ids[i] == ids[i - 1]:
                decode[i] = False
        written = [str(v).strip() for v in events[name].to_numpy()[rows]]
        return pd.DataFrame({"row": rows, "stim_file": written, "stim_id": ids, "decode": decode},
                            columns=list(ROW_COLUMNS))

    @functools.cached_property
    def _by_stem(self) -> dict[str, list[Path]]:
        index: dict[str, list[Path]] = {}
        for root in self.roots:
            if root.is_dir():
                for path in sorted(root.rglob("*")):
                    if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                        index.setdefault(path.stem, []).append(path.resolve())
        return index

    def path(self, stim_id: str) -> Path:
        """``<stim_id>.<ext>`` under the stimuli folders (MissingInputError naming them when absent)."""
        found = self._by_stem.get(str(stim_id), [])
        if not found:
            folders = ", ".join(str(r) for r in self.roots)
            raise MissingInputError(f"stimulus '{stim_id}' not found: no {stim_id}.JPEG (or other image) in {folders}",
                                    self.roots[-1])
        return found[0]

    def check(self, stim_id: str) -> None:
        check_image_file(self.path(stim_id), stim_id)

    def load_image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        return read_image_file(self.path(stim_id), stim_id, size)

    def category(self, stim_id: str) -> str | None:
        synset = synset_of(str(stim_id))
        return self.synsets.get(synset) if synset else None
