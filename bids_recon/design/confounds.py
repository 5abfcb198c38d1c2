"""Which fMRIPrep confound columns a run's GLM regresses out: the ``--confounds`` setting resolved against a table.

The setting (``workflow.glm.confounds``) is a list of items, each a column name or a group named as fMRIPrep names
its confounds (see fMRIPrep's documentation, *Outputs: Confounds*):

=================  ==============================================================================================
``motion6``        ``trans_x trans_y trans_z rot_x rot_y rot_z``
``motion12``       ``motion6`` and their ``_derivative1``
``motion24``       ``motion12`` and the ``_power2`` and ``_derivative1_power2`` of the six
``csf`` ``wm``     ``csf``, ``white_matter`` (mean signal in the eroded CSF / white-matter masks)
``global``         ``global_signal``
``fd``             ``framewise_displacement``
``nss``            every ``non_steady_state_outlier*`` column (one-hot: one per non-steady-state volume; a table
                   without any means fMRIPrep found none, so the group is then empty, never missing)
``cosine``         every ``cosine*`` column (fMRIPrep's discrete cosine basis, 128 s)
``acompcor:K``     the first K anatomical CompCor components (``a_comp_cor_*``): those of the combined WM+CSF mask
                   where the confounds JSON sidecar gives each component's ``Mask`` (fMRIPrep >= 1.4), else the
                   first K by number (older tables hold the combined mask's only)
``tcompcor:K``     the first K temporal CompCor components (``t_comp_cor_*``)
``none``           no confounds (alone)
``auto``           :data:`DEFAULT_CONFOUNDS` (``motion6 csf wm nss``), each group used where
                   the run's table has it and skipped (logged, reported) where it does not: the default
=================  ==============================================================================================

Everything named explicitly must be in every run's table: otherwise :class:`~bids_recon.errors.BadDataError` (exit
65) naming the setting, the file, what is missing and the columns the table has. Tables of fMRIPrep before 1.2
(``CSF``, ``X`` ... ``RotZ``, ``aCompCor00``) are read with their columns renamed to the current names
(:data:`LEGACY_CONFOUNDS`), and legacy names in the setting mean the same columns.

One function, :func:`resolve_confounds`, decides the columns; the preflight check
(:mod:`bids_recon.bids.checks`), the GLM (:func:`load_confounds`), the workflow's sidecars and methods text and the
report all go through it, so what is checked, what runs and what is reported are the same columns.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, MissingInputError, UsageError

#: The setting and its flag, named in every message about the choice of confounds.
SETTING = "workflow.glm.confounds"
FLAG = "--confounds"
WHERE = f"{FLAG} / {SETTING}"
#: The confound groups of the default setting ``auto`` (:class:`bids_recon.glm.params.GlmParams`): each is regressed
#: out of a run where its confounds table has it, and skipped (logged, reported) where it does not.
DEFAULT_CONFOUNDS = ("motion6", "csf", "wm", "nss")
#: The default: :data:`DEFAULT_CONFOUNDS`, each where the table has it.
AUTO = "auto"
#: No confounds.
NONE = "none"

MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
#: Groups of fixed columns.
FIXED_GROUPS: dict[str, tuple[str, ...]] = {
    "motion6": MOTION,
    "motion12": MOTION + tuple(f"{m}_derivative1" for m in MOTION),
    "motion24": MOTION + tuple(f"{m}_derivative1" for m in MOTION) + tuple(f"{m}_power2" for m in MOTION)
    + tuple(f"{m}_derivative1_power2" for m in MOTION),
    "csf": ("csf",),
    "wm": ("white_matter",),
    "global": ("global_signal",),
    "fd": ("framewise_displacement",),
}
#: Groups of every column matching a pattern (numbered columns).
PATTERN_GROUPS: dict[str, re.Pattern] = {
    "nss": re.compile(r"^non_steady_state_outlier_?(\d+)$"),
    "cosine": re.compile(r"^cosine_?(\d+)$"),
}
#: Groups of the first K components: group -> (column pattern, CompCor mask the sidecar must give, or None).
COMPONENT_GROUPS: dict[str, tuple[re.Pattern, str | None]] = {
    "acompcor": (re.compile(r"^a_comp_cor_(\d+)$"), "combined"),
    "tcompcor": (re.compile(r"^t_comp_cor_(\d+)$"), None),
}
#: How the methods text and the report name each group.
GROUP_LABELS = {
    "motion6": "the 6 motion parameters",
    "motion12": "the 12 motion parameters (trans_x ... rot_z and their _derivative1)",
    "motion24": "the 24 motion parameters (trans_x ... rot_z, their _derivative1, and the _power2 of both)",
    "csf": "the mean CSF signal", "wm": "the mean white-matter signal", "global": "the global signal",
    "fd": "the framewise displacement", "nss": "one-hot regressors of the non-steady-state volumes",
    "cosine": "fMRIPrep's discrete cosine regressors", "acompcor": "anatomical CompCor components",
    "tcompcor": "temporal CompCor components",
}
GROUPS = (*FIXED_GROUPS, *PATTERN_GROUPS, *(f"{g}:K" for g in COMPONENT_GROUPS))

#: Confound columns of fMRIPrep before 1.2 (``*_bold_confounds.tsv``) -> their current names.
LEGACY_CONFOUNDS = {
    "CSF": "csf", "WhiteMatter": "white_matter", "GlobalSignal": "global_signal", "stdDVARS": "std_dvars",
    "non-stdDVARS": "dvars", "FramewiseDisplacement": "framewise_displacement", "X": "trans_x", "Y": "trans_y",
    "Z": "trans_z", "RotX": "rot_x", "RotY": "rot_y", "RotZ": "rot_z",
}
_LEGACY_NUMBERED = {"aCompCor": "a_comp_cor_", "tCompCor": "t_comp_cor_", "Cosine": "cosine",
                    "NonSteadyStateOutlier": "non_steady_state_outlier"}


def current_confound_names(columns: Sequence[str]) -> dict[str, str]:
    """Legacy fMRIPrep confound names among ``columns`` -> current names (``aCompCor00`` -> ``a_comp_cor_00``).

    A legacy name whose current name is also among ``columns`` is left alone (the current column is used).
    """
    renamed = {}
    for column in columns:
        if column in LEGACY_CONFOUNDS:
            renamed[column] = LEGACY_CONFOUNDS[column]
            continue
        for old, new in _LEGACY_NUMBERED.items():
            if column.startswith(old) and column[len(old):].isdigit():
                renamed[column] = new + column[len(old):]
    return {old: new for old, new in renamed.items() if new not in columns}


@dataclass(frozen=True)
class ConfoundItem:
    """One item of the setting.

    Attributes
    ----------
    name : str
        As written (``motion6``, ``acompcor:5``, ``trans_x``), a legacy column name as its current name.
    group : str or None
        The group (``acompcor`` for ``acompcor:5``); ``None`` for a column.
    count : int or None
        K of ``acompcor:K`` / ``tcompcor:K``.
    required : bool
        False for the groups ``auto`` stands for: skipped where a table lacks them.
    """

    name: str
    group: str | None = None
    count: int | None = None
    required: bool = True


def parse_confounds(spec: Sequence[str] | str) -> list[ConfoundItem]:
    """The items of a ``--confounds`` setting, ``auto`` expanded to the default groups (not required).

    Raises
    ------
    UsageError
        ``none`` with other items, a group that needs ``:K`` without it (or K not a positive integer), an unknown
        ``NAME:K`` group (exit 64).
    """
    words = [spec] if isinstance(spec, str) else list(spec)
    words = [str(w).strip() for w in words if str(w).strip()]
    if NONE in (w.lower() for w in words):
        if len(words) > 1:
            raise UsageError(f"{WHERE}: '{NONE}' means no confounds and cannot be combined with {', '.join(words)}")
        return []
    items: list[ConfoundItem] = []
    for word in words:
        if word.lower() == AUTO:
            items += [ConfoundItem(g, g, required=False) for g in DEFAULT_CONFOUNDS]
            continue
        name, sep, count = word.partition(":")
        if sep or name in COMPONENT_GROUPS:
            if name not in COMPONENT_GROUPS:
                close = difflib.get_close_matches(name, list(COMPONENT_GROUPS), n=1)
                raise UsageError(f"{WHERE}: '{word}': only {' and '.join(f'{g}:K' for g in COMPONENT_GROUPS)} take a "
                                 "count" + (f"; did you mean '{close[0]}:{count}'?" if close else ""))
            if not count.isdigit() or int(count) < 1:
                raise UsageError(f"{WHERE}: '{word}': give the number of components, e.g. '{name}:5'")
            items.append(ConfoundItem(f"{name}:{int(count)}", name, int(count)))
        elif word in FIXED_GROUPS or word in PATTERN_GROUPS:
            items.append(ConfoundItem(word, word))
        else:
            items.append(ConfoundItem(current_confound_names([word]).get(word, word)))  # RotZ, aCompCor00: current
    by_name: dict[str, ConfoundItem] = {}
    for item in items:  # an item named twice (auto csf): the explicit one wins
        if item.name not in by_name or item.required:
            by_name[item.name] = item
    return list(by_name.values())


def check_confounds_setting(spec: Sequence[str]) -> str | None:
    """What is wrong with a setting's value (for :func:`bids_recon.params.setting`'s ``check``), or ``None``."""
    try:
        parse_confounds(spec)
    except UsageError as exc:
        return str(exc).removeprefix(f"{WHERE}: ")
    return None


@dataclass(frozen=True)
class ConfoundChoice:
    """What one run's confounds table gave for the setting.

    Attributes
    ----------
    columns : tuple of str
        The columns regressed out (current names), in the setting's order.
    used : dict
        Item name -> its columns (``nss`` of a table without outliers: ``()``).
    skipped : dict
        Item name -> the columns the table lacks, for the default groups (``auto``) that were skipped.
    notes : tuple of str
        How components were picked (``acompcor:5``: by the sidecar's mask or by number).
    """

    columns: tuple[str, ...]
    used: dict[str, tuple[str, ...]] = field(default_factory=dict)
    skipped: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """As JSON types (the session's info, the betas' sidecars)."""
        return {"Columns": list(self.columns), "Used": {k: list(v) for k, v in self.used.items()},
                "Skipped": {k: list(v) for k, v in self.skipped.items()}, "Notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConfoundChoice:
        """Read back :meth:`to_json`."""
        return cls(tuple(data.get("Columns", ())), {k: tuple(v) for k, v in dict(data.get("Used", {})).items()},
                   {k: tuple(v) for k, v in dict(data.get("Skipped", {})).items()}, tuple(data.get("Notes", ())))


def _number(pattern: re.Pattern, column: str) -> int:
    return int(pattern.match(column).group(1))


def _components(group: str, count: int, columns: Sequence[str], sidecar: Mapping[str, Any] | None
                ) -> tuple[list[str], str, str]:
    """The first ``count`` components of ``group`` (may be fewer), how they were chosen, and what the pool was."""
    pattern, mask = COMPONENT_GROUPS[group]
    numbered = sorted((c for c in columns if pattern.match(c)), key=lambda c: _number(pattern, c))
    meta = {c: sidecar[c] for c in numbered if isinstance((sidecar or {}).get(c), Mapping)}
    retained = [c for c in numbered if meta.get(c, {}).get("Retained", True) is not False]
    if mask is not None and any("Mask" in m for m in meta.values()):
        pool = [c for c in retained if str(meta.get(c, {}).get("Mask", "")).lower() == mask]
        how = (f"the {mask} mask's first {count} components (the confounds sidecar's Mask; its CSF and WM "
               "components left out)")
        pool_text = f"{len(pool)} components of the {mask} mask, by the sidecar's Mask"
    else:
        pool = retained
        how = f"the first {count} by number" + (" (the confounds sidecar gives no Mask)" if mask else "")
        pool_text = f"{len(pool)} components"
    return pool[:count], how, pool_text


def resolve_confounds(columns: Sequence[str], spec: Sequence[str] | str,
                      sidecar: Mapping[str, Any] | None = None, path: Path | str | None = None) -> ConfoundChoice:
    """The columns of a confounds table that the setting ``spec`` selects: the one place that decides them.

    Parameters
    ----------
    columns : sequence of str
        The table's columns, current names (:func:`current_confound_names` applied).
    spec : list of str
        The setting (``["auto"]``, ``["motion24", "acompcor:5"]``, column names, ``["none"]``).
    sidecar : mapping, optional
        The table's JSON sidecar (fMRIPrep >= 1.4: each CompCor component's ``Mask`` and ``Retained``).
    path : Path, optional
        The table, named in errors.

    Returns
    -------
    ConfoundChoice

    Raises
    ------
    UsageError
        A malformed setting (exit 64).
    BadDataError
        A column or group named explicitly is not in the table (exit 65): the message names the setting, the
        file, what is missing and the columns the table has.
    """
    present = set(columns)
    chosen: list[str] = []
    used: dict[str, tuple[str, ...]] = {}
    skipped: dict[str, tuple[str, ...]] = {}
    notes: list[str] = []
    missing: list[tuple[ConfoundItem, list[str]]] = []
    for item in parse_confounds(spec):
        lacking: list[str] = []
        if item.group is None:
            found = [item.name] if item.name in present else []
            lacking = [] if found else [item.name]
        elif item.group in FIXED_GROUPS:
            found = list(FIXED_GROUPS[item.group])
            lacking = [c for c in found if c not in present]
        elif item.group in PATTERN_GROUPS:
            pattern = PATTERN_GROUPS[item.group]
            found = sorted((c for c in columns if pattern.match(c)), key=lambda c: _number(pattern, c))
            if not found and item.group == "cosine":
                lacking = ["cosine*"]
        else:
            found, how, pool = _components(item.group, item.count, columns, sidecar)
            if len(found) < item.count:
                lacking = [f"the table has {pool}"]
            else:
                notes.append(f"{item.name}: {how}")
        if lacking and item.required:
            missing.append((item, lacking))
        elif lacking:
            skipped[item.name] = tuple(lacking)
        else:
            used[item.name] = tuple(found)
            chosen += [c for c in found if c not in chosen]
    if missing:
        raise BadDataError(_missing_message(missing, list(columns)), path)
    return ConfoundChoice(tuple(chosen), used, skipped, tuple(notes))


def _missing_message(missing: list[tuple[ConfoundItem, list[str]]], columns: list[str]) -> str:
    named, hints = [], []
    for item, lacking in missing:
        named.append(item.name if lacking == [item.name] else f"{item.name} ({', '.join(lacking)})")
        close = difflib.get_close_matches(item.name, [*columns, *FIXED_GROUPS, *PATTERN_GROUPS], n=1, cutoff=0.7)
        if item.group is None and close:
            hints.append(f"'{close[0]}' for '{item.name}'")
    return (f"{WHERE} names {', '.join(named)}, not in this confounds table"
            + (f" (did you mean {', '.join(hints)}?)" if hints else "")
            + f"; it has {len(columns)} columns: {short_columns(columns)}. Name columns or groups it has with "
            f"{FLAG} (or in {SETTING}), or use '{FLAG} {AUTO}': {' '.join(DEFAULT_CONFOUNDS)}, each where a table "
            "has it")


def short_columns(columns: Sequence[str], limit: int = 24) -> str:
    """Columns for a message: numbered runs shortened (``a_comp_cor_00..a_comp_cor_53 (54)``), at most ``limit``."""
    parts: list[str] = []
    run: list[str] = []
    prefix = None
    numbered = re.compile(r"^(.*?)(\d+)$")

    def close() -> None:
        if run:
            parts.append(run[0] if len(run) == 1 else f"{run[0]}..{run[-1]} ({len(run)})")

    for column in columns:
        match = numbered.match(column)
        if match and match.group(1) == prefix:
            run.append(column)
            continue
        close()
        run, prefix = ([column], match.group(1)) if match else ([], None)
        if not match:
            parts.append(column)
    close()
    shown = ", ".join(parts[:limit])
    return shown + (f", ... ({len(parts) - limit} more)" if len(parts) > limit else "") if parts else "none"


def sidecar_of(path: Path) -> Path:
    """The JSON sidecar beside a confounds table."""
    path = Path(path)
    return path.with_name(path.name[: -len(".tsv")] + ".json") if path.name.endswith(".tsv") else \
        path.with_suffix(".json")


def _read_sidecar(path: Path, spec: Sequence[str] | str) -> dict[str, Any] | None:
    """The sidecar, read only when a CompCor group needs it; unreadable JSON is an error naming it."""
    if not any(item.group in COMPONENT_GROUPS for item in parse_confounds(spec)):
        return None
    json_path = sidecar_of(path)
    if not json_path.is_file():
        return None
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise BadDataError(f"cannot read the confounds sidecar ({exc})", json_path) from exc
    return data if isinstance(data, dict) else None


def confound_columns(path: Path | str) -> list[str]:
    """A confounds table's columns, current names (its header only)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("confounds file does not exist", path)
    try:
        header = list(pd.read_csv(path, sep="\t", nrows=0).columns)
    except Exception as exc:  # pandas raises several parser errors
        raise BadDataError(f"cannot read confounds table ({exc})", path) from exc
    renamed = current_confound_names(header)
    return [renamed.get(c, c) for c in header]


def choose_confounds(path: Path | str, spec: Sequence[str] | str) -> ConfoundChoice:
    """:func:`resolve_confounds` on a table's header and sidecar, without reading its rows (workflow building,
    methods text): the columns :func:`load_confounds` will use."""
    return resolve_confounds(confound_columns(path), spec, _read_sidecar(Path(path), spec), path)


def load_confounds(path: Path | str, spec: Sequence[str] | str, n_volumes: int
                   ) -> tuple[pd.DataFrame, ConfoundChoice]:
    """Read the confounds the setting selects from a run's table, ``n/a`` (first rows of derivatives) set to 0.

    Parameters
    ----------
    path : Path
        ``*_desc-confounds_timeseries.tsv`` (or an older fMRIPrep's name; CamelCase columns are renamed).
    spec : list of str
        The ``--confounds`` setting (see the module's documentation).
    n_volumes : int
        Number of BOLD volumes; the table must have as many rows.

    Returns
    -------
    confounds : pandas.DataFrame
        ``(n_volumes, n_columns)`` float, the chosen columns.
    choice : ConfoundChoice
        Which columns, by item, and the default groups skipped.

    Raises
    ------
    MissingInputError
        The table does not exist (exit 66).
    BadDataError
        Another row count than the BOLD's volumes, a column named explicitly that is not there, a chosen column
        with a value that is not a number or that is ``n/a`` in every row (exit 65).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("confounds file does not exist", path)
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
    except Exception as exc:  # pandas raises several parser errors
        raise BadDataError(f"cannot read confounds table ({exc})", path) from exc
    table = table.rename(columns=current_confound_names(list(table.columns)))
    if len(table) != n_volumes:
        raise BadDataError(f"confounds table has {len(table)} rows but the BOLD run has {n_volumes} volumes", path)
    choice = resolve_confounds(list(table.columns), spec, _read_sidecar(path, spec), path)
    values = {}
    for column in choice.columns:
        raw = table[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = (numbers.isna() & raw.notna()) | np.isinf(numbers.to_numpy(float))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise BadDataError(f"confound column '{column}' has {raw.iloc[row]!r} on line {row + 2}, not a number "
                               "(missing values are written n/a)", path)
        if numbers.isna().all():
            raise BadDataError(f"confound column '{column}' is n/a in every row: leave it out ({WHERE})", path)
        values[column] = numbers.fillna(0.0).astype(float)
    return pd.DataFrame(values, index=table.index, columns=list(choice.columns), dtype=float), choice


# ----------------------------------------------------------------------------------------------------------
# what ran, in words (methods text, report, log)


def _item_text(item: str, columns: Sequence[str], where: str = "") -> str:
    """``the 6 motion parameters (trans_x, ..., rot_z)``; a column item is its name."""
    group = item.split(":")[0]
    if group in COMPONENT_GROUPS:
        label = f"the first {item.split(':')[1]} {GROUP_LABELS[group]}"
    else:
        label = GROUP_LABELS.get(group)
    if label is None:
        return item + (f" ({where.lstrip(', ')})" if where else "")
    if group in ("motion12", "motion24"):  # the label lists them
        return label + (f" ({where.lstrip(', ')})" if where else "")
    return f"{label} ({short_columns(columns, limit=30)}{where})"


def describe_confounds(choices: Sequence[ConfoundChoice], spec: Sequence[str] | str,
                       with_skipped: bool = True) -> str:
    """What the setting gave over a participant's runs, as a clause: which confounds, in how many runs, how
    components were picked and (``with_skipped``) the default groups skipped; the methods text and the report say
    the same."""
    items = [item.name for item in parse_confounds(spec)]
    if not items:
        return f"no confounds ({FLAG} {NONE})"
    n = len(choices)
    used_parts, skipped_parts, empty = [], [], []
    for name in items:
        runs = [c for c in choices if c.used.get(name)]
        lacking = [c for c in choices if name in c.skipped]
        if runs:
            columns = list(dict.fromkeys(col for c in runs for col in c.used[name]))
            used_parts.append(_item_text(name, columns, "" if len(runs) == n else f", in {len(runs)} of {n} runs"))
        elif not lacking:
            empty.append(name)
        if lacking:
            what = ", ".join(dict.fromkeys(x for c in lacking for x in c.skipped[name]))
            skipped_parts.append(f"{name} ({what} absent from {len(lacking)} of {n} runs)")
    text = _and(used_parts) if used_parts else "no confound columns"
    if "nss" in empty:
        text += "; no non-steady-state volume was marked (no non_steady_state_outlier columns)"
    notes = list(dict.fromkeys(note for c in choices for note in c.notes))
    if notes:
        text += "; " + "; ".join(notes)
    if skipped_parts and with_skipped:
        text += (f"; skipped, not in the confounds tables: {_and(skipped_parts)} (the default '{FLAG} {AUTO}' "
                 "uses each group where a table has it)")
    return text


def _and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def skipped_line(subject: str, choices: Sequence[ConfoundChoice], paths: Sequence[Path | str],
                 spec: Sequence[str] | str) -> str | None:
    """The one log line of a participant whose tables lack default groups (``None`` when none was skipped)."""
    lacking: dict[str, int] = {}
    example = None
    for choice, path in zip(choices, paths, strict=True):
        for name in choice.skipped:
            lacking[name] = lacking.get(name, 0) + 1
            example = example or Path(path)
    if not lacking:
        return None
    counts = ", ".join(f"{name} ({n} of {len(choices)} runs)" for name, n in lacking.items())
    return (f"sub-{subject}: default confounds skipped, not in the fMRIPrep confounds tables: {counts} (e.g. "
            f"{example.name}); regressed out: {describe_confounds(choices, spec, with_skipped=False)}. Name "
            f"confounds with {FLAG} to require them")


__all__ = [
    "AUTO", "ConfoundChoice", "ConfoundItem", "GROUPS", "LEGACY_CONFOUNDS", "NONE", "SETTING", "choose_confounds",
    "confound_columns", "current_confound_names", "describe_confounds", "load_confounds", "parse_confounds",
    "resolve_confounds", "short_columns", "skipped_line",
]
