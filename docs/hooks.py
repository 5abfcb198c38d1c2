"""MkDocs hooks: generated content, so the site cannot drift from the code.

- ``<!-- cli-reference -->`` becomes the command-line reference rendered from the argparse parser.
- ``<!-- settings-reference -->`` becomes the settings reference rendered from the configuration's dataclasses.
- ``<!-- kinds-reference -->`` becomes the list of registered kinds (generators, estimators, resolvers...).
- ``<!-- include: PATH LANG -->`` becomes a fenced code block with the file at PATH (relative to the repository).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = re.compile(r"<!-- include: (\S+)(?: (\w+))? -->")


def _include(match: re.Match) -> str:
    path = ROOT / match.group(1)
    if not path.is_file():
        raise FileNotFoundError(f"docs include: {match.group(1)} does not exist")
    return f"```{match.group(2) or 'text'}\n{path.read_text().rstrip()}\n```"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs hook signature)
    """Replace the generated-content markers of a page."""
    if "<!-- cli-reference -->" in markdown:
        from bids_recon.cli.reference import render_markdown

        markdown = markdown.replace("<!-- cli-reference -->", render_markdown())
    if "<!-- kinds-reference -->" in markdown:
        from bids_recon.cli.reference import render_kinds_markdown

        markdown = markdown.replace("<!-- kinds-reference -->", render_kinds_markdown())
    if "<!-- settings-reference -->" in markdown:
        from bids_recon.cli.reference import render_settings_markdown

        markdown = markdown.replace("<!-- settings-reference -->", render_settings_markdown())
    return INCLUDE.sub(_include, markdown)
