"""Dataset presets: ``--dataset nsd|things|bold5000|god|deeprecon|nod`` sets, in one flag, what a public dataset
needs (stimulus resolver, stimulus column, test split, task, caption source, the fMRIPrep space of its derivatives).

A preset is data: a dict of setting values (dotted keys, as in the TOML file) plus hooks that may compute more from
the dataset itself (:meth:`DatasetPreset.settings_for`). It only fills settings the user did not set: the
defaults < the preset < ``--config-file`` < the flags typed; the saved ``bids_recon.toml`` records the resulting
values. Each dataset is one module here that registers its preset with :func:`register` (the documentation's
recipe page of each dataset says what it sets and why). Issue 13 adds beta importers and ROI volumes to the same
presets (more keys in :attr:`DatasetPreset.settings`, more hooks).

Plain Python: importing this package reads no file and imports no nipype.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, ClassVar

from bids_recon.registry import Registry


class DatasetPreset:
    """One dataset's settings (subclass it, then decorate with :func:`register`).

    Attributes
    ----------
    name : str
        ``--dataset`` value.
    title : str
        The dataset's name and accession.
    settings : dict
        Dotted setting key -> value (``"workflow.stimuli.resolver": "nsd"``).
    recipe : str
        The documentation page of the dataset (under ``docs/datasets/``).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    settings: ClassVar[dict[str, Any]] = {}
    recipe: ClassVar[str] = ""

    def settings_for(self, bids_dir: Path | None) -> dict[str, Any]:
        """The preset's values for the dataset in ``bids_dir`` (default: :attr:`settings`; a hook may add more)."""
        return dict(self.settings)

    def adapt(self, values: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
        """The preset's ``values`` given what the user chose (``chosen``: the file's and the flags' settings, nested
        tables): a hook may drop values those choices make pointless (default: unchanged)."""
        return values

    def describe(self) -> str:
        """One line per setting, for ``--help`` and the documentation."""
        return "; ".join(f"{key.split('.')[-1]}={value!r}" for key, value in self.settings.items())


#: Registered presets by name (one instance each).
PRESETS: dict[str, DatasetPreset] = Registry("dataset preset")
#: Class decorator: add a preset to :data:`PRESETS` under its ``name``.
register = PRESETS.register


def get_preset(name: str) -> DatasetPreset:
    """The preset registered as ``name`` (UsageError, exit 64, naming the known ones)."""
    return PRESETS.named(name)


def sessions_matching(bids_dir: Path | None, prefixes: tuple[str, ...]) -> list[str]:
    """Session labels in ``bids_dir/sub-*/`` that start with one of ``prefixes`` (sorted; none when no dataset)."""
    if bids_dir is None or not Path(bids_dir).is_dir():
        return []
    labels = {p.name.removeprefix("ses-") for p in Path(bids_dir).glob("sub-*/ses-*") if p.is_dir()}
    return sorted(label for label in labels if label.startswith(prefixes))


def _import_all() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all()

__all__ = ["PRESETS", "DatasetPreset", "get_preset", "register", "sessions_matching"]
