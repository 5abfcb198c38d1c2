"""The command-line reference of ``bids_recon`` as Markdown, rendered from the argparse parser.

The documentation site inserts it into ``docs/cli.md`` at build time (``docs/hooks.py``), so the reference can
never disagree with :func:`bids_recon.cli.parser.build_parser`.
"""

from __future__ import annotations

import argparse
import io

from bids_recon.cli.parser import build_parser

_SKIP = (argparse._HelpAction,)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.dest.upper()}`"
    metavar = "" if action.nargs == 0 else " " + (action.metavar or action.dest.upper())
    if action.nargs in ("+", "*"):
        metavar += " ..."
    return ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS) or not action.option_strings:
        return ""
    return f"`{action.default}`"


def _help(action: argparse.Action) -> str:
    text = (action.help or "").replace("%%", "%")
    if action.choices:
        text += " Choices: " + ", ".join(f"`{c}`" for c in action.choices) + "."
    if isinstance(action, argparse._AppendAction):
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
