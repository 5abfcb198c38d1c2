"""Typed, validated settings: the field helper every parameter dataclass uses, and the validator.

Each domain package owns a small dataclass of its stage's settings (``GlmParams`` in :mod:`bids_recon.glm.params`,
``DiffusionParams`` in :mod:`bids_recon.generate.diffusion`, ...), whose fields are declared with :func:`setting`:
the default, the allowed values (``choices``, bounds) and a one-line description. :mod:`bids_recon.config` composes
them into one tree; :func:`build` turns nested dicts (a TOML file, the command line) into that tree and refuses,
with :class:`~bids_recon.errors.UsageError` (exit 64), any unknown key or bad value, naming the key, the value,
where it came from and what is allowed (with a close match for typos).

Everything here is plain Python (no numpy, no nipype), so a notebook can build and check settings cheaply.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, get_args, get_origin

from bids_recon.errors import UsageError

#: Where a value came from when nobody set it.
DEFAULT_SOURCE = "the default"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    choices: Iterable[Any] | Callable[[], Iterable[Any]] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_items: int | None = None,
    check: Callable[[Any], str | None] | None = None,
    doc: str | Callable[[], str] = "",
) -> Any:
    """A dataclass field with its validation rules.

    Parameters
    ----------
    default, factory
        The default value, or a function returning it (for lists and dicts).
    choices
        Allowed values (for a list field: allowed items), or a function returning them (a registry).
    ge, gt, le, lt
        Bounds of a number (for a list field: of each item).
    min_items
        Smallest length of a list or dict.
    check
        Extra rule: returns an explanation of what is wrong, or ``None`` when the value is fine.
    doc
        One line saying what the setting does (the command line's help and the docs reuse it), or a function
        returning it (a registry's entries).
    """
    metadata = {"choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "min_items": min_items,
                "check": check, "doc": doc}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def problem_of(parse: Callable[[Any], Any], value: Any) -> str | None:
    """The message of the :class:`~bids_recon.errors.UsageError` that ``parse(value)`` raises, or ``None`` when it
    parses: a ``check`` of :func:`setting` from a parser of the setting's text."""
    try:
        parse(value)
    except UsageError as exc:
        return str(exc)
    return None


def doc_of(cls: type, name: str) -> str:
    """The ``doc`` of field ``name`` of dataclass ``cls``."""
    doc = next(f.metadata.get("doc", "") for f in dataclasses.fields(cls) if f.name == name)
    return doc() if callable(doc) else doc


def choices_of(cls: type, name: str) -> list[Any] | None:
    """The allowed values of field ``name`` of ``cls`` (a ``Literal`` type or ``choices``), or ``None``."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    found = _choices(field, typing.get_type_hints(cls)[name])
    return None if found is None else list(found)


def default_of(cls: type, name: str) -> Any:
    """The default value of field ``name`` of dataclass ``cls``."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _choices(field: dataclasses.Field, hint: Any) -> list[Any] | None:
    choices = field.metadata.get("choices")
    if callable(choices):
        choices = choices()
    if choices is not None:
        return list(choices)
    inner = _strip_optional(hint)
    if get_origin(inner) is Literal:
        return list(get_args(inner))
    if get_origin(inner) in (list, tuple) and get_args(inner) and get_origin(get_args(inner)[0]) is Literal:
        return list(get_args(get_args(inner)[0]))
    return None


def _strip_optional(hint: Any) -> Any:
    if _is_union(hint):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (typing.Union, types.UnionType)


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "none"
    if _is_union(hint):
        return " or ".join(_type_name(a) for a in get_args(hint))
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin in (list, tuple):
        return f"a list of {_type_name(get_args(hint)[0])}" if get_args(hint) else "a list"
    if origin is dict:
        return f"a table of {_type_name(get_args(hint)[1])}" if get_args(hint) else "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(hint, str(hint))


class _Invalid(Exception):
    """A value that does not fit; the message says what was expected."""


def _convert(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` (ints accepted for floats, nothing else converted), or raise :class:`_Invalid`."""
    if hint is Any:
        return value
    if _is_union(hint):
        for arg in get_args(hint):
            try:
                return _convert(value, arg)
            except _Invalid:
                continue
        raise _Invalid(f"expected {_type_name(hint)}")
    if hint is type(None):
        if value is None:
            return None
        raise _Invalid("expected nothing")
    origin = get_origin(hint)
    if origin is Literal:
        if value in get_args(hint) and not (isinstance(value, bool) and not any(a is value for a in get_args(hint))):
            return value
        raise _Invalid(f"expected {_type_name(hint)}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _Invalid(f"expected {_type_name(hint)}")
        item = get_args(hint)[0] if get_args(hint) else Any
        out = [_convert(v, item) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _Invalid(f"expected {_type_name(hint)}")
        key_type, value_type = get_args(hint) if get_args(hint) else (Any, Any)
        return {_convert(k, key_type): _convert(v, value_type) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid("expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Invalid("expected an integer")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _Invalid("expected a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Invalid("expected text")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _Invalid(f"expected {hint.__name__}")
    return value


def _bounds(meta: Mapping[str, Any]) -> str:
    parts = []
    for key, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(key) is not None:
            parts.append(f"{word} {meta[key]:g}")
    return " and ".join(parts)


def _check_rules(value: Any, field: dataclasses.Field, hint: Any) -> None:
    meta = field.metadata
    items = value if isinstance(value, list | tuple) else [value]
    if meta.get("min_items") is not None and isinstance(value, list | tuple | dict) and len(value) < meta["min_items"]:
        raise _Invalid(f"needs at least {meta['min_items']} item(s)")
    choices = _choices(field, hint)
    if choices is not None:
        for item in items:
            if item not in choices:
                close = difflib.get_close_matches(str(item), [str(c) for c in choices], n=1)
                hint_text = f"; did you mean '{close[0]}'?" if close else ""
                which = f"{item!r} is not allowed: " if isinstance(value, list | tuple) else ""
                raise _Invalid(f"{which}must be one of {', '.join(repr(c) for c in choices)}{hint_text}")
    bounds = _bounds(meta)
    if bounds:
        for item in items:
            if item is None:
                continue
            ok = ((meta.get("gt") is None or item > meta["gt"]) and (meta.get("ge") is None or item >= meta["ge"])
                  and (meta.get("lt") is None or item < meta["lt"]) and (meta.get("le") is None or item <= meta["le"]))
            if not ok:
                raise _Invalid(f"must be {bounds}")
    if meta.get("check") is not None:
        problem = meta["check"](value)
        if problem:
            raise _Invalid(problem)


def _fail(key: str, value: Any, source: str, problem: str) -> UsageError:
    return UsageError(f"setting '{key}' = {value!r} (from {source}): {problem}")


def build(cls: type, data: Mapping[str, Any] | None, prefix: str, sources: Mapping[str, str] | None = None) -> Any:
    """Build dataclass ``cls`` from nested ``data``, validating every value.

    Parameters
    ----------
    cls : type
        A dataclass whose fields use :func:`setting` (nested dataclasses are built recursively; a class with a
        ``__sections__`` method builds the tables it names as well, see :class:`bids_recon.config.GenerateConfig`).
    data : mapping
        Values by field name; missing fields take their default.
    prefix : str
        Dotted name of this table (``workflow.glm``), used in messages.
    sources : mapping, optional
        Dotted key -> where its value came from (``config file c.toml``, ``the command line (--glm)``).

    Raises
    ------
    UsageError
        An unknown key, a value of the wrong type, out of range or not among the allowed values (exit 64).
    """
    sources = sources or {}
    if data is not None and not isinstance(data, Mapping):
        raise UsageError(f"'{prefix}' (from {sources.get(prefix, 'the configuration')}) must be a table of settings")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    sections = cls.__sections__() if hasattr(cls, "__sections__") else {}
    known = [n for n in fields if not fields[n].metadata.get("sections")] + list(sections)
    kwargs: dict[str, Any] = {}
    for name in sorted(set(data) - set(known)):
        key = _join(prefix, name)
        close = difflib.get_close_matches(name, known, n=1)
        raise UsageError(f"unknown setting '{key}' (from {sources.get(key, 'the configuration')})"
                         + (f"; did you mean '{_join(prefix, close[0])}'?" if close else "")
                         + f"; known in [{prefix or 'the top level'}]: {', '.join(known)}")
    for name, field in fields.items():
        key, hint = _join(prefix, name), hints[name]
        if field.metadata.get("sections"):
            kwargs[name] = {section: build(section_cls, data.get(section), _join(prefix, section), sources)
                            for section, section_cls in sections.items()}
            continue
        if dataclasses.is_dataclass(hint):
            value = data.get(name, {})
            if not isinstance(value, Mapping):
                raise _fail(key, value, sources.get(key, DEFAULT_SOURCE), "must be a table of settings")
            kwargs[name] = build(hint, value, key, sources)
            continue
        if name not in data:
            continue
        value, source = data[name], sources.get(key, DEFAULT_SOURCE)
        if _is_union(hint) and type(None) in get_args(hint) and isinstance(value, str) \
                and value.strip().lower() == NONE_TEXT:
            value = None
        try:
            converted = _convert(value, hint)
            _check_rules(converted, field, hint)
        except _Invalid as exc:
            raise _fail(key, value, source, str(exc)) from None
        kwargs[name] = converted
    return cls(**kwargs)


#: How ``None`` is written in TOML (which has no null) for a setting whose default is not ``None``.
NONE_TEXT = "none"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def locate(root: type, dotted: str) -> tuple[str, type, str | None] | None:
    """What a dotted key names in the tree of dataclass ``root``.

    Returns
    -------
    tuple or None
        ``("table", cls, None)`` for a table of settings (a nested dataclass or a section), ``("setting", cls,
        name)`` for the field ``name`` of dataclass ``cls``, ``None`` for a key the tree does not have.
    """
    cls: type = root
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        sections = cls.__sections__() if hasattr(cls, "__sections__") else {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part in sections:
            cls = sections[part]
        elif part in fields and not fields[part].metadata.get("sections"):
            hint = typing.get_type_hints(cls)[part]
            if not dataclasses.is_dataclass(hint):
                return ("setting", cls, part) if last else None
            cls = hint
        else:
            return None
        if last:
            return ("table", cls, None)
    return None


def to_dict(obj: Any, keep_none: bool = False) -> dict[str, Any]:
    """A parameter tree as plain TOML types (tuples as lists; sections inlined).

    ``None`` values are dropped (TOML has no null), except where the default is not ``None``: there they are
    written as ``"none"``, which :func:`build` reads back as ``None``. With ``keep_none``, ``None`` is kept as is.
    """
    out: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if field.metadata.get("sections"):
            out.update({name: to_dict(section, keep_none) for name, section in value.items()})
        elif dataclasses.is_dataclass(value):
            out[field.name] = to_dict(value, keep_none)
        elif value is not None:
            out[field.name] = _plain(value)
        elif keep_none:
            out[field.name] = None
        elif field.default is not None and field.default is not dataclasses.MISSING:
            out[field.name] = NONE_TEXT
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def validate(obj: Any, prefix: str, sources: Mapping[str, str] | None = None) -> Any:
    """Check a parameter tree that was built or changed in code; return a validated copy (or raise UsageError)."""
    return build(type(obj), to_dict(obj, keep_none=True), prefix, sources)
