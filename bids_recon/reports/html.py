"""Self-contained HTML reports (one file, inline CSS, figures linked by relative path).

The page is rendered from the Jinja2 template ``bids_recon/data/reports/report.html.j2`` with the
stylesheet ``report.css`` inlined. All text given by the caller is escaped; pass a
:class:`markupsafe.Markup` object as ``Section.text`` or ``methods`` to insert trusted HTML as is.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import jinja2
import pandas as pd
from markupsafe import Markup, escape

from bids_recon import __version__

__all__ = ["Figure", "Section", "render_report"]

LOGGER = logging.getLogger(__name__)

#: Template folder inside the package.
TEMPLATE_DIR = "data/reports"
TEMPLATE_NAME = "report.html.j2"
STYLESHEET_NAME = "report.css"


@dataclass
class Figure:
    """A figure file shown in a report section.

    Attributes
    ----------
    path : pathlib.Path
        The figure file (SVG, PNG...). An absolute path, or a path relative to the HTML file's folder.
        In the page it is linked by its path relative to the HTML file's folder, so it must stay
        next to the HTML file (e.g. ``sub-01/figures/x.svg`` beside ``sub-01.html``).
    caption : str
        Plain-text caption (escaped).
    """

    path: Path
    caption: str = ""


@dataclass
class Section:
    """One section of a report.

    Attributes
    ----------
    title : str
        Heading, also the label in the navigation bar.
    text : str
        Plain text; paragraphs are separated by blank lines. It is escaped, unless it is a
        :class:`markupsafe.Markup` object (trusted HTML, inserted as is).
    figures : list of Figure
        Figures, in order.
    tables : list of (str, pandas.DataFrame)
        ``(caption, table)`` pairs, rendered without the index.
    anchor : str, optional
        HTML id of the section; default: made from the title.
    """

    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    anchor: str | None = None


def _paragraphs(text: str) -> list[Markup]:
    """Split plain text into escaped paragraphs (blank-line separated); Markup passes through."""
    if isinstance(text, Markup):
        return [text] if str(text).strip() else []
    blocks = re.split(r"\n\s*\n", str(text).strip())
    return [Markup(" ").join(escape(line.strip()) for line in b.splitlines()) for b in blocks if b.strip()]


def _slug(title: str, used: set[str]) -> str:
    """HTML id made from ``title``, unique among ``used`` (which it is added to)."""
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    if base[0].isdigit():
        base = f"s-{base}"
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


def _float_format(x: float) -> str:
    return f"{x:.4g}"


def _table_html(table: pd.DataFrame) -> Markup:
    """Render ``table`` as an escaped HTML table (no index)."""
    html = table.to_html(
        index=False,
        float_format=_float_format,
        classes=["table"],
        border=0,
        na_rep="n/a",
        escape=True,
        justify="left",
    )
    return Markup(html)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bids_recon", TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(
    title: str,
    sections: Sequence[Section],
    out_html: str | os.PathLike[str],
    summary: Mapping[str, str] | None = None,
    methods: str = "",
    errors: Sequence[str] | None = None,
) -> Path:
    """Write a self-contained HTML report and return its path.

    Parameters
    ----------
    title : str
        Page title and heading (escaped).
    sections : sequence of Section
        The report's sections, in order.
    out_html : path-like
        Output HTML file; its folder is created. Written atomically (temporary file + rename).
    summary : mapping of str to str, optional
        Key/value pairs shown at the top (subject, sessions, runs, trials, voxels, software version...).
    methods : str
        Plain-text methods boilerplate; paragraphs separated by blank lines (escaped unless Markup).
    errors : sequence of str, optional
        Error messages (e.g. tracebacks), each shown preformatted in an "Errors" section.

    Returns
    -------
    pathlib.Path
        ``out_html``.

    Notes
    -----
    A figure file that does not exist is not fatal: the page shows a placeholder and the problem
    is added to the Errors section (and logged as a warning), so that a report is still written
    for a partly failed run.
    """
    out = Path(out_html)
    if out.suffix.lower() not in {".html", ".htm"}:
        raise ValueError(f"out_html must end in .html, got {str(out)!r}")
    base = out.parent.resolve()
    all_errors = [str(e) for e in (errors or [])]
    used: set[str] = {"summary", "methods", "errors"}

    rendered_sections = []
    for section in sections:
        if not isinstance(section, Section):
            raise TypeError(f"sections must hold Section objects, got {type(section).__name__}")
        anchor = _slug(section.anchor, used) if section.anchor else _slug(section.title, used)
        figures = []
        for fig in section.figures:
            fig_path = Path(fig.path)
            absolute = fig_path if fig_path.is_absolute() else base / fig_path
            src = Path(os.path.relpath(absolute.resolve(), base)).as_posix()
            exists = absolute.is_file()
            if not exists:
                message = f"Figure not found for section {section.title!r}: {absolute}"
                LOGGER.warning(message)
                all_errors.append(message)
            figures.append({"src": quote(src), "caption": fig.caption, "exists": exists, "name": src})
        tables = [{"caption": caption, "html": _table_html(table)} for caption, table in section.tables]
        rendered_sections.append(
            {
                "title": section.title,
                "anchor": anchor,
                "paragraphs": _paragraphs(section.text),
                "figures": figures,
                "tables": tables,
            }
        )

    env = _environment()
    css, _, _ = env.loader.get_source(env, STYLESHEET_NAME)  # type: ignore[union-attr]
    html = env.get_template(TEMPLATE_NAME).render(
        css=Markup(css),
        title=title,
        summary=[(str(k), str(v)) for k, v in (summary or {}).items()],
        sections=rendered_sections,
        methods=_paragraphs(methods),
        errors=all_errors,
        version=__version__,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
