"""The command-line reference of ``bids_recon`` as Markdown, rendered from the argparse parser.

The documentation site inserts it into ``docs/cli.md`` at build time (``docs/hooks.py``), so the reference can
never disagree with :func:`bids_recon.cli.parser.build_parser`.
"""

from __future__ import annotations

import argparse
import io
import re

from bids_recon.cli.parser import build_parser

_SKIP = (argparse._HelpAction,)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{str(action.metavar or action.dest).upper()}`"
    metavar = "" if action.nargs == 0 else " " + (action.metavar or action.dest.upper())
    if action.nargs in ("+", "*"):
        metavar += " ..."
    return ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings)


def _default(action: argparse.Action) -> str:
    value = getattr(action, "setting_default", None)  # parser defaults are "not given": show the setting's
    if action.nargs == 0 or value in (None, [], {}, "") or not action.option_strings:
        return ""
    return f"`{' '.join(map(str, value)) if isinstance(value, list) else value}`"


def _help(action: argparse.Action) -> str:
    text = (action.help or "").replace("%%", "%")
    choices = getattr(action, "setting_choices", None)
    if choices:
        text += " Choices: " + ", ".join(f"`{c}`" for c in choices) + "."
    if "." in str(action.dest):
        text += f" Setting `{action.dest}`."
    if type(action).__name__ == "_ToDict" and action.nargs is None:
        text += " Repeatable."
    return text


def render_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """Usage, description, then one table per argument group (flags, default, help) and the epilog.

    Parameters
    ----------
    parser : argparse.ArgumentParser, optional
        :func:`bids_recon.cli.parser.build_parser` when omitted.
    """
    parser = parser or build_parser()
    usage = io.StringIO()
    parser.print_usage(usage)
    lines = ["```text", usage.getvalue().strip(), "```", "", parser.description or "", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, _SKIP)]
        if not actions:
            continue
        title = {"positional arguments": "Positional arguments", "options": "General options"}.get(
            group.title or "", group.title or "")
        lines += [f"## {title}", "", "| argument | default | description |", "|---|---|---|"]
        lines += [f"| {_cell(_flags(a))} | {_cell(_default(a))} | {_cell(_help(a))} |" for a in actions]
        lines.append("")
    if parser.epilog:
        lines += [parser.epilog, ""]
    return "\n".join(lines)


def _type_text(hint) -> str:
    import typing

    from bids_recon.params import _type_name

    return _type_name(hint) if hint is not typing.Any else "any"


def _settings_rows(cls: type, prefix: str, flags: dict[str, str]) -> list[str]:
    import dataclasses
    import typing

    from bids_recon.params import choices_of, default_of, doc_of

    rows = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]) or field.metadata.get("sections"):
            continue
        key = f"{prefix}.{field.name}"
        default = default_of(cls, field.name)
        allowed = choices_of(cls, field.name)
        meta = field.metadata
        rules = [f"one of {', '.join(f'`{c}`' for c in allowed)}"] if allowed else []
        rules += [f"{word} {meta[k]:g}" for k, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
                  if meta.get(k) is not None]
        if meta.get("min_items"):
            rules.append(f"at least {meta['min_items']} item(s)")
        flag = f"`{flags[key]}`" if key in flags else ""
        if isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        elif default in (None, "", [], {}):
            shown = ""
        elif isinstance(default, list):
            shown = "`" + ", ".join(str(v) for v in default) + "`"
        else:
            shown = f"`{default}`"
        rows.append(f"| `{field.name}` | {_cell(_type_text(hints[field.name]))} | {_cell(shown)} | "
                    f"{_cell('; '.join(rules))} | {flag} | {_cell(doc_of(cls, field.name))} |")
    return rows


def render_settings_markdown() -> str:
    """One table per settings table of :class:`bids_recon.config.Config`: key, type, default, allowed, flag, doc."""
    import dataclasses
    import typing

    from bids_recon.cli.parser import flags_of
    from bids_recon.config import Config

    flags = flags_of(build_parser())
    lines: list[str] = []

    def table(cls: type, prefix: str) -> None:
        rows = _settings_rows(cls, prefix, flags)
        if rows:
            summary = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", (cls.__doc__ or "").strip().splitlines()[0])
            lines.extend([f"## `[{prefix}]`", "", summary, "",
                          "| key | type | default | allowed | flag | what it does |", "|---|---|---|---|---|---|",
                          *rows, ""])
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.metadata.get("sections"):
                for name, section in cls.__sections__().items():
                    table(section, f"{prefix}.{name}")
            elif dataclasses.is_dataclass(hints[field.name]):
                table(hints[field.name], f"{prefix}.{field.name}")

    for name in ("workflow", "execution", "nipype"):
        table(typing.get_type_hints(Config)[name], name)
    return "\n".join(lines)


#: Modules whose import fills the registries of every kind (each kind registers itself when its package loads).
KIND_PACKAGES = ("bids_recon.config", "bids_recon.features.resolvers", "bids_recon.glm.importers",
                 "bids_recon.datasets", "bids_recon.sim.layouts", "bids_recon.sim.shapes")


def render_kinds_markdown() -> str:
    """Every registry of kinds (generators, estimators, resolvers, importers, presets, layouts, shapes...) as Markdown:
    one table per registry, one row per entry with the module it lives in; read from the registries themselves
    (:data:`bids_recon.registry.ALL`), so the architecture page lists what the code registers."""
    import importlib
    import inspect

    from bids_recon.registry import ALL, summary_of

    for module in KIND_PACKAGES:
        importlib.import_module(module)
    lines = []
    for registry in ALL:
        if not registry:
            continue
        lines += [f"### {registry.what.capitalize()}s", "", f"Registered by `{registry.key}`; one module each.", "",
                  f"| {registry.key} | module | what |", "|---|---|---|"]
        for key, entry in registry.items():
            cls = entry if isinstance(entry, type) else type(entry)
            module = inspect.getmodule(cls).__name__
            lines.append(f"| `{key}` | `{module}` | {_cell(summary_of(entry))} |")
        lines.append("")
    return "\n".join(lines)
