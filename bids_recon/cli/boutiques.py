"""A Boutiques descriptor of ``bids_recon``, generated from the argparse parser (never written by hand).

``python -m bids_recon.cli.boutiques boutiques/bids_recon.json`` rewrites the committed descriptor; a test
regenerates it and fails when the two differ, so the descriptor follows every change of
:func:`bids_recon.cli.parser.build_parser`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from bids_recon import __version__
from bids_recon.cli.parser import ANALYSIS_LEVELS, build_parser

#: The container image the Dockerfile builds (``docker build -t`` this name).
CONTAINER_IMAGE = f"bidsrecon/bids_recon:{__version__}"
SCHEMA_VERSION = "0.5"
_SKIP = (argparse._HelpAction, argparse._VersionAction)
_OUTPUT_PATHS = ("output_dir", "work_dir")
#: Inputs that name files or folders read (Boutiques checks they exist).
_FILES = ("bids_dir", "bids_filter_file", "config_file", "use_plugin")


def _input_id(action: argparse.Action) -> str:
    """The option's name (``participant_label`` for ``--participant-label``, ``bids_dir`` for a positional)."""
    name = command_line_flag(action).lstrip("-") if action.option_strings else str(action.metavar or action.dest)
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def command_line_flag(action: argparse.Action) -> str:
    """The flag the descriptor uses: the first long option (``--nprocs`` rather than its alias ``--nthreads``)."""
    return next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])


def _value_type(action: argparse.Action) -> tuple[str, dict[str, Any]]:
    """Boutiques type of an argparse action, and the keys that refine it."""
    if action.nargs == 0:
        return "Flag", {}
    if action.type is int:
        return "Number", {"integer": True}
    if action.type is float:
        return "Number", {"integer": False}
    if _input_id(action) in _OUTPUT_PATHS:
        return "String", {}  # written, not read: Boutiques must not require it to exist
    if _input_id(action) in _FILES:
        return "File", {}
    return "String", {}


def _default(action: argparse.Action) -> Any:
    """The setting's documented default (parser defaults are "not given")."""
    value = getattr(action, "setting_default", None)
    if value in (None, "", [], {}) or action.nargs == 0 or isinstance(value, dict):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _describe(action: argparse.Action) -> str:
    text = (action.help or "").replace("%%", "%")
    if action.nargs is None and action.option_strings and type(action).__name__ in ("_ToDict", "_RoiMasks"):
        text += " (repeatable on the command line; one value in this descriptor)"
    if type(action).__name__ == "_Verbosity":
        text += " (the descriptor passes it once)"
    return text


def build_descriptor(parser: argparse.ArgumentParser | None = None) -> dict[str, Any]:
    """The Boutiques descriptor (schema 0.5) of the ``bids_recon`` command line.

    Parameters
    ----------
    parser : argparse.ArgumentParser, optional
        The parser to describe; :func:`bids_recon.cli.parser.build_parser` when omitted.

    Returns
    -------
    dict
        JSON-serialisable descriptor: one input per argparse option (help and version left out).
    """
    parser = parser or build_parser()
    inputs: list[dict[str, Any]] = []
    keys: list[str] = []
    for action in parser._actions:
        if isinstance(action, _SKIP):
            continue
        ident = _input_id(action)
        value_key = f"[{ident.upper()}]"
        keys.append(value_key)
        btype, extra = _value_type(action)
        item: dict[str, Any] = {"id": ident, "name": ident.replace("_", " "), "type": btype,
                                "description": _describe(action), "value-key": value_key,
                                "optional": not (not action.option_strings or action.required), **extra}
        if action.option_strings:
            item["command-line-flag"] = command_line_flag(action)
        if action.nargs in ("+", "*"):
            item["list"] = True
            if action.nargs == "+":
                item["min-list-entries"] = 1
        choices = ANALYSIS_LEVELS if ident == "analysis_level" else getattr(action, "setting_choices", None)
        if choices and action.nargs != 0:
            item["value-choices"] = list(choices)
        default = _default(action)
        if default is not None:
            item["default-value"] = default
        inputs.append(item)
    return {
        "name": "bids_recon",
        "tool-version": __version__,
        "description": parser.description,
        "author": "bids_recon developers",
        "url": "https://github.com/bids-recon/bids_recon",
        "command-line": " ".join([parser.prog, *keys]),
        "schema-version": SCHEMA_VERSION,
        "container-image": {"type": "docker", "image": CONTAINER_IMAGE},
        "inputs": inputs,
        "output-files": [
            {"id": "output_folder", "name": "output folder", "path-template": "[OUTPUT_DIR]",
             "description": "the BIDS-derivatives dataset (betas, ROIs, decoders, reconstructions, reports)"},
        ],
        "tags": {"domain": ["neuroinformatics", "fmri", "bids-app", "image-reconstruction"]},
    }


def render_descriptor(parser: argparse.ArgumentParser | None = None) -> str:
    """The descriptor as the committed file's text (sorted keys kept in schema order, 2-space indent)."""
    return json.dumps(build_descriptor(parser), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the descriptor to the path given (stdout when none)."""
    argv = sys.argv[1:] if argv is None else argv
    text = render_descriptor()
    if argv:
        Path(argv[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(argv[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
