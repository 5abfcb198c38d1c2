"""The TemplateFlow files bids_recon reads, as queries: what a container or an HPC cache must hold, and where.

:func:`required_templates` is the list that ``scripts/prefetch_templates.py`` downloads and checks; it is derived
from :class:`bids_recon.rois.params.RoiParams`, the same settings :func:`bids_recon.rois.atlas.atlas_rois` queries
with, so a change of atlas in the configuration changes what is prefetched.

:func:`find_template_files` answers a query from the files under :func:`templateflow_home`, read-only: bids_recon
never imports ``templateflow`` at run time, since importing it unpacks TemplateFlow's skeleton (about 2,500
placeholder files) into ``TEMPLATEFLOW_HOME`` (by default ``~/.cache/templateflow``) when that folder is empty.

:func:`template_downloads` lists what ``bids_recon-fetch`` gets for the queries: TemplateFlow's skeleton from the
installed templateflow package, then each file from the skeleton (label tables) or TemplateFlow's S3 bucket.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from bids_recon.download import FetchItem, Layout
from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.rois.params import RoiParams


@dataclass(frozen=True)
class TemplateQuery:
    """One TemplateFlow file: ``templateflow.api.get(template, **query)``.

    Attributes
    ----------
    template : str
        Template identifier, e.g. ``MNI152NLin2009cAsym``.
    query : dict
        TemplateFlow entities (``resolution``, ``atlas``, ``desc``, ``suffix``, ``extension``).
    purpose : str
        What bids_recon uses the file for.
    """

    template: str
    query: dict[str, object] = field(default_factory=dict)
    purpose: str = ""

    def describe(self) -> str:
        """``tpl-<template> key=value ...`` for messages and documentation."""
        return f"tpl-{self.template} " + " ".join(f"{k}={v}" for k, v in self.query.items())


def required_templates(rois: RoiParams | None = None) -> list[TemplateQuery]:
    """The TemplateFlow files a participant run with these ROI settings reads.

    Parameters
    ----------
    rois : RoiParams, optional
        ROI settings (template, resolution, atlas, label-table template); the defaults when omitted.

    Returns
    -------
    list of TemplateQuery
        The atlas (thresholded dseg), its label table, and the template's brain mask at the atlas resolution.
    """
    rois = rois or RoiParams()
    return [
        TemplateQuery(rois.template, {"resolution": rois.resolution, "atlas": rois.atlas, "desc": rois.atlas_desc,
                                      "suffix": "dseg", "extension": ".nii.gz"},
                      "atlas from which the default visual ROIs are taken"),
        TemplateQuery(rois.label_table_template, {"atlas": rois.atlas, "suffix": "dseg", "extension": ".tsv"},
                      "label table of the atlas (ROIs are defined by label names)"),
        TemplateQuery(rois.template, {"resolution": rois.resolution, "desc": "brain", "suffix": "mask",
                                      "extension": ".nii.gz"},
                      "brain mask of the template at the atlas resolution"),
    ]


#: TemplateFlow query keys -> the entity keys in file names (``resolution=2`` selects ``res-02``).
TEMPLATE_ENTITY_KEYS = {"resolution": "res", "density": "den"}


def templateflow_home() -> Path:
    """The TemplateFlow folder the run reads: ``$TEMPLATEFLOW_HOME``, else templateflow's default, computed as
    templateflow computes it (``platformdirs.user_cache_dir("templateflow")``: ``$XDG_CACHE_HOME/templateflow``
    or ``~/.cache/templateflow`` on Linux), without importing templateflow (whose import writes into that folder).
    """
    home = os.environ.get("TEMPLATEFLOW_HOME")
    if home:
        return Path(home).expanduser().absolute()
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # platformdirs comes with templateflow; without either, Linux's default
        cache = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
        return (Path(cache) / "templateflow").absolute()
    return Path(user_cache_dir("templateflow")).absolute()


def template_entities(name: str) -> dict[str, str] | None:
    """Entities of a TemplateFlow file name, with ``suffix`` and ``extension`` (``None`` for other names).

    ``tpl-MNI152NLin2009cAsym_res-02_desc-brain_mask.nii.gz`` -> ``{"tpl": "MNI152NLin2009cAsym", "res": "02",
    "desc": "brain", "suffix": "mask", "extension": ".nii.gz"}``.
    """
    base = name.rsplit("/", 1)[-1]
    if not base.startswith("tpl-") or "." not in base:
        return None
    stem, _, extension = base.partition(".")
    parts = stem.split("_")
    entities = dict(p.split("-", 1) for p in parts[:-1] if "-" in p)
    entities["suffix"], entities["extension"] = parts[-1], "." + extension
    return entities


def _same(found: str | None, wanted: object) -> bool:
    """Whether an entity's label matches a query value, as TemplateFlow matches them (``2`` is ``02``; the
    extension with or without its dot; a list: any of its values; ``None``: the entity is absent)."""
    if isinstance(wanted, list | tuple):
        return any(_same(found, w) for w in wanted)
    if wanted is None or found is None:
        return wanted is None and found is None
    text = str(wanted)
    if found.isdigit() and text.isdigit():
        return int(found) == int(text)
    if text.startswith(".") or found.startswith("."):
        return found.lstrip(".") == text.lstrip(".")
    return found == text


def template_matches(name: str, template: str, query: dict[str, object]) -> bool:
    """Whether the file ``name`` is selected by ``templateflow.api.ls(template, **query)``: every entity the query
    gives must match; the others are free."""
    entities = template_entities(name)
    if entities is None or entities.get("tpl") != template:
        return False
    return all(_same(entities.get(TEMPLATE_ENTITY_KEYS.get(key, key)), value) for key, value in query.items())


def find_template_files(template: str, query: dict[str, object], home: Path | None = None) -> list[Path]:
    """The files under ``home/tpl-<template>/`` that a TemplateFlow query selects, sorted; reads nothing else
    and writes nothing.

    Parameters
    ----------
    template : str
        Template identifier, e.g. ``MNI152NLin2009cAsym``.
    query : dict
        TemplateFlow entities (``resolution``, ``atlas``, ``desc``, ``suffix``, ``extension``).
    home : Path, optional
        The TemplateFlow folder; :func:`templateflow_home` when omitted.

    Returns
    -------
    list of Path
        Every matching name, present or not: TemplateFlow's 0-byte placeholders and DataLad's broken links
        (files not downloaded) included; the caller decides what is usable.
    """
    folder = (home or templateflow_home()) / f"tpl-{template}"
    if not folder.is_dir():
        return []
    return sorted(path for path in _walk(folder) if template_matches(path.name, template, query))


def _walk(folder: Path) -> Iterable[Path]:
    """Every non-folder entry under ``folder``, skipping hidden folders (``.git``, ``.datalad``)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield from (Path(root) / f for f in files)


def missing_templates(queries: list[TemplateQuery]) -> list[tuple[TemplateQuery, str]]:
    """The queries that do not resolve to exactly one non-empty file in ``$TEMPLATEFLOW_HOME`` (never downloads).

    Returns
    -------
    list of (TemplateQuery, str)
        Each failing query with the reason.
    """
    problems = []
    for item in queries:
        try:
            path = templateflow_file(item.template, **item.query)
        except Exception as exc:  # MissingInputError, BadDataError: report them all
            problems.append((item, str(exc)))
            continue
        if not Path(path).is_file():
            problems.append((item, f"not a file: {path}"))
    return problems


HOW_TO_PROVIDE_TEMPLATES = (
    "bids_recon never downloads at run time and never writes into TEMPLATEFLOW_HOME. On a machine with internet, "
    "run `bids_recon-fetch FOLDER --include templates` (it fetches the atlas, its label table and the brain mask) "
    "and point TEMPLATEFLOW_HOME at FOLDER/templateflow (`source FOLDER/bids_recon-env.sh`; containers ship one); "
    "or give your own masks with --roi-mask NAME=PATH."
)


def _query_text(query: dict[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in query.items())


def templateflow_file(template: str, **query: object) -> Path:
    """Return one TemplateFlow file already on disk, never downloading, never writing, without importing
    ``templateflow`` (its import populates an empty ``TEMPLATEFLOW_HOME``).

    Parameters
    ----------
    template : str
        Template identifier, e.g. ``MNI152NLin2009cAsym``.
    **query
        TemplateFlow entities (``resolution``, ``atlas``, ``desc``, ``suffix``, ``extension``), matched as
        ``templateflow.api.ls`` matches them (:func:`find_template_files`).

    Raises
    ------
    MissingInputError
        No such file in ``$TEMPLATEFLOW_HOME`` (default ``~/.cache/templateflow``), or only TemplateFlow's empty
        placeholder (or a DataLad link to a file not downloaded) is there (exit 66).
    BadDataError
        The query matches several files (exit 65).
    """
    home = templateflow_home()
    found = find_template_files(template, dict(query), home)
    present = [p for p in found if p.is_file() and p.stat().st_size > 0]
    if len(present) == 1:
        return present[0]
    if len(present) > 1:
        raise BadDataError(f"TemplateFlow query tpl-{template} {_query_text(query)} matches {len(present)} files "
                           f"({', '.join(p.name for p in present[:3])}): be more specific", home)
    state = (f"only as an empty placeholder or a link to a file not downloaded ({found[0].name})" if found else
             "not on disk")
    raise MissingInputError(
        f"TemplateFlow file tpl-{template} {_query_text(query)} is {state} (TEMPLATEFLOW_HOME={home}). "
        + HOW_TO_PROVIDE_TEMPLATES,
    )


# ------------------------------------------------------------------------------------------------------------------
# bids_recon-fetch

#: The ``bids_recon-fetch --include`` group of the TemplateFlow files.
FETCH_GROUP = "templates"
#: TemplateFlow's S3 bucket (``templateflow.conf.cache.CacheConfig.s3_root``; templateflow's own ``_s3_get``
#: downloads ``<s3_root>/<path relative to TEMPLATEFLOW_HOME>``).
TEMPLATEFLOW_S3 = "https://templateflow.s3.amazonaws.com"


def templateflow_skeleton() -> Path:
    """TemplateFlow's skeleton zip shipped with the installed templateflow (found without importing it).

    Importing ``templateflow.conf`` would populate ``$TEMPLATEFLOW_HOME`` as a side effect; the package's
    location is enough.

    Raises
    ------
    MissingInputError
        templateflow is not installed, or its skeleton is not in the package (exit 66).
    """
    spec = importlib.util.find_spec("templateflow")
    if spec is None or not spec.submodule_search_locations:
        raise MissingInputError("the templateflow package is not installed (pip install templateflow)")
    skeleton = Path(list(spec.submodule_search_locations)[0]) / "conf" / "templateflow-skel.zip"
    if not skeleton.is_file():
        raise MissingInputError("templateflow's skeleton is missing from the installed package", skeleton)
    return skeleton


def template_downloads(layout: Layout, queries: Sequence[TemplateQuery]) -> list[FetchItem]:
    """The TemplateFlow files of ``queries`` for ``bids_recon-fetch``, after TemplateFlow's skeleton.

    The skeleton holds every template's folder, its ``template_description.json``, the label tables and 0-byte
    placeholders for the images (a ``TEMPLATEFLOW_HOME`` without it would hold only the downloaded files): it is
    unpacked first; a queried file that the skeleton holds whole is copied from it, the others are downloaded.

    Raises
    ------
    UsageError
        A query does not select exactly one file of the skeleton (exit 64).
    """
    skeleton = templateflow_skeleton()
    with zipfile.ZipFile(skeleton) as archive:
        infos = {i.filename: i for i in archive.infolist() if not i.is_dir()}
    origin = "templateflow package"
    items = [FetchItem(FETCH_GROUP, layout.templateflow_home, "unpack", f"{origin}: {skeleton.name}",
                       sum(i.file_size for i in infos.values()), origin, archive=str(skeleton),
                       purpose=f"TemplateFlow's skeleton ({len(infos)} entries: folders, descriptions, placeholders)")]
    for query in queries:
        found = [name for name in infos if name.startswith(f"tpl-{query.template}/")
                 and template_matches(name, query.template, query.query)]
        if len(found) != 1:
            raise UsageError(f"TemplateFlow query {query.describe()} matches {len(found)} files in templateflow's "
                             f"skeleton ({', '.join(found[:3]) or 'none'}); it must match exactly one")
        rel = found[0]
        dest = layout.templateflow_home / rel
        if infos[rel].file_size > 0:  # a real file in the skeleton (label tables, JSON): copied, no download
            items.append(FetchItem(FETCH_GROUP, dest, "copy", f"{origin}: {rel}", infos[rel].file_size, origin,
                                   purpose=query.purpose, archive=str(skeleton), source_file=rel))
        else:
            items.append(FetchItem(FETCH_GROUP, dest, "url", f"{TEMPLATEFLOW_S3}/{quote(rel)}",
                                   purpose=query.purpose))
    return items
