"""Dataset presets: ``--dataset nsd|nsdsynthetic|nsdimagery|things|bold5000|god|deeprecon|nod`` sets, in one flag,
what a public dataset needs (stimulus resolver, stimulus column, test split, task, caption source, the fMRIPrep
space of its derivatives).

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


def chosen_value(chosen: dict[str, Any], key: str) -> Any:
    """The value of dotted ``key`` in the user's choices (nested tables of the file and the flags), or ``None``."""
    value: Any = chosen
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def fmriprep_dir_of(chosen: dict[str, Any]) -> Path | None:
    """The fMRIPrep folder the run will read: ``-d fmriprep=``, else ``BIDS_DIR/derivatives/fmriprep`` when it
    exists (``None``: none)."""
    given = (chosen_value(chosen, "execution.derivatives") or {}).get("fmriprep")
    if given:
        return Path(given)
    bids_dir = chosen_value(chosen, "execution.bids_dir")
    default = Path(bids_dir) / "derivatives" / "fmriprep" if bids_dir else None
    return default if default is not None and default.is_dir() else None


def fmriprep_spaces(chosen: dict[str, Any]) -> list[tuple[str, str | None]]:
    """``(space, res)`` of the preprocessed BOLD in the run's fMRIPrep folder (names only; empty when none)."""
    from bids_recon.bids.fmriprep import scan_spaces

    folder = fmriprep_dir_of(chosen)
    return scan_spaces(folder) if folder is not None else []


def resolution_in(found: list[tuple[str, str | None]], space: str, default: str | None = None) -> str | None:
    """The ``res-`` of ``space``'s files among ``found``: the only one, else ``default`` when it is there, else the
    first (``None``: the files have no ``res-``)."""
    values = [res for name, res in found if name == space]
    if len(values) == 1 or (values and default not in values):
        return values[0]
    return default


def native_space_masks(values: dict[str, Any], chosen: dict[str, Any], native: str, template: str
                       ) -> dict[str, Any]:
    """A preset whose ROI masks (``workflow.rois.user_masks``) are in the participants' ``native`` space (GOD's and
    Deeprecon's T1w masks): keep them with BOLD in that space; where the user chose another space, or the fMRIPrep
    folder has no ``native`` BOLD but has the atlas's ``template``, drop the masks (the atlas serves in its own
    space) and take that space.

    Returns
    -------
    dict
        The preset's values with ``workflow.space``, ``workflow.resolution`` and ``workflow.rois.user_masks`` decided.
    """
    out = dict(values)
    typed = chosen_value(chosen, "workflow.space")
    if typed is not None:
        if typed != native:
            out.pop("workflow.rois.user_masks", None)
        out.pop("workflow.space", None)
        return out
    found = fmriprep_spaces(chosen)
    spaces = {space for space, _ in found}
    if native in spaces or not found:
        if found:
            out["workflow.resolution"] = resolution_in(found, native)
        return out
    if template in spaces:  # no native BOLD: the atlas in its own space, not native masks on template data
        out.pop("workflow.rois.user_masks", None)
        out["workflow.space"] = template
        out["workflow.resolution"] = resolution_in(found, template, "2")
    return out


def _import_all() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all()

__all__ = ["PRESETS", "DatasetPreset", "chosen_value", "fmriprep_dir_of", "fmriprep_spaces", "get_preset",
           "native_space_masks", "register", "resolution_in", "sessions_matching"]
