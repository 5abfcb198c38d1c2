"""What a configuration reads from caches, fetched into one folder for offline runs (``bids_recon-fetch``).

The folder is laid out as the caches expect::

    FOLDER/torch/hub/checkpoints/      TORCH_HOME: torchvision and SwAV weights of the evaluation networks
    FOLDER/huggingface/hub/            HF_HOME/hub: a generator's model (diffusers layout) and CLIP ViT-L/14
    FOLDER/templateflow/               TEMPLATEFLOW_HOME: the atlas, its label table and the brain mask
    FOLDER/nsd/                        NSD metadata / stimuli (only with --include nsd-metadata / nsd-stimuli)
    FOLDER/bids_recon-env.sh           ``export HF_HOME=... TORCH_HOME=... TEMPLATEFLOW_HOME=...`` (source it)
    FOLDER/bids_recon.env              the same as KEY=VALUE lines (``docker --env-file``, ``apptainer --env-file``)
    FOLDER/bids_recon-fetch.json       manifest: every file, its size, sha256, source and how it was verified

Each group of files (``--include``) comes from the module that reads them: a generator's downloads from its card
(:meth:`bids_recon.generate.card.GeneratorCard.downloads`, e.g. the diffusion model), the evaluation networks'
weights from :func:`bids_recon.evaluate.networks.network_downloads`, the TemplateFlow files of the ROI settings
from :func:`bids_recon.rois.templates.template_downloads`, NSD's files from
:func:`bids_recon.datasets.nsd.nsd_downloads`. Downloading and verifying is :mod:`bids_recon.download`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bids_recon import __version__
from bids_recon.datasets import nsd
from bids_recon.download import FetchItem, Layout, fetch_item, probe, probe_urls, resolve, size_text
from bids_recon.errors import ServiceUnavailableError, UsageError
from bids_recon.evaluate import networks
from bids_recon.generate.card import generator_cards
from bids_recon.params import to_dict
from bids_recon.rois import templates

ENV_FILE = "bids_recon-env.sh"
DOCKER_ENV_FILE = "bids_recon.env"
MANIFEST = "bids_recon-fetch.json"


def fetch_groups() -> tuple[str, ...]:
    """Every ``--include`` group: the generators' (their cards'), the networks', the templates', the datasets'."""
    return (*default_groups(), *nsd.FETCH_GROUPS)


def default_groups() -> tuple[str, ...]:
    """The groups fetched unless ``--include`` says otherwise: the generators', the networks' and the templates'."""
    cards = [card.fetch_group for card in generator_cards().values() if card.fetch_group]
    return (*cards, networks.FETCH_GROUP, templates.FETCH_GROUP)


def parse_groups(text: str) -> list[str]:
    """The groups of a comma list (UsageError, exit 64, for an unknown one)."""
    groups = [g.strip() for g in text.split(",") if g.strip()]
    known = fetch_groups()
    unknown = [g for g in groups if g not in known]
    if unknown:
        raise UsageError(f"--include: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return groups


def _network_users(metrics: str | Iterable[str]) -> dict[str, str]:
    """Network -> the labels of the selected metrics that use it."""
    from bids_recon.evaluate.standard import METRICS, required_networks, select_metrics

    selected = select_metrics(metrics)
    return {net: ", ".join(METRICS[m].label for m in selected if METRICS[m].network == net)
            for net in required_networks(selected)}


def build_plan(folder: Path, groups: Sequence[str], metrics: str | Iterable[str] = "all", rois: Any = None,
               generators: Mapping[str, Any] | None = None,
               report: Callable[[str], None] = print) -> list[FetchItem]:
    """Every file of the chosen groups, before asking any server.

    Parameters
    ----------
    folder : Path
        The fetch folder.
    groups : sequence of str
        ``--include`` groups (:func:`fetch_groups`).
    metrics : str or iterable of str
        Metric ids whose networks to fetch (``all``, a comma list, or ids).
    rois : RoiParams, optional
        The ROI settings whose TemplateFlow files to fetch (the defaults when omitted).
    generators : mapping, optional
        Generator name -> its settings (its card's ``params``): the generators whose downloads to fetch, with
        the settings that say which (e.g. the diffusion model). Default: every generator, at its defaults.
    report : callable
        Says what is left out (e.g. a model that is a local folder).
    """
    layout = Layout(folder)
    cards = generator_cards()
    items: list[FetchItem] = []
    if templates.FETCH_GROUP in groups:
        items += templates.template_downloads(layout, templates.required_templates(rois))
    if networks.FETCH_GROUP in groups:
        items += networks.network_downloads(layout, _network_users(metrics))
    for name, params in _fetched_generators(groups, generators).items():
        items += cards.named(name).downloads(params, layout, report)
    items += nsd.nsd_downloads(layout, groups)
    return items


def _fetched_generators(groups: Sequence[str], generators: Mapping[str, Any] | None) -> dict[str, Any]:
    """The generators (name -> settings) whose fetch group is among ``groups``; all, at their defaults, by default."""
    cards = generator_cards()
    if generators is None:
        generators = {name: card.params() for name, card in cards.items()}
    return {name: params for name, params in generators.items()
            if cards.named(name).fetch_group and cards.named(name).fetch_group in groups}


def environment_lines(layout: Layout, mount_point: str | None = None) -> dict[str, str]:
    """The variables that point bids_recon (torch, huggingface_hub, templateflow) at the folder."""
    root = mount_point.rstrip("/") if mount_point else str(layout.root)
    return {"TORCH_HOME": f"{root}/torch", "HF_HOME": f"{root}/huggingface", "HF_HUB_CACHE": f"{root}/huggingface/hub",
            "TEMPLATEFLOW_HOME": f"{root}/templateflow"}


def write_environment(layout: Layout, mount_point: str | None = None, env_file: Path | None = None) -> list[Path]:
    """Write the sourceable ``bids_recon-env.sh`` and the ``KEY=VALUE`` ``bids_recon.env``."""
    values = environment_lines(layout, mount_point)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    shell = [f"# bids_recon-fetch {__version__}, {stamp}: caches for offline bids_recon runs",
             f"# folder: {layout.root}" + (f" (as seen at {mount_point})" if mount_point else ""),
             *(f"export {k}={shlex.quote(v)}" for k, v in values.items()),
             "# nothing is downloaded at run time; to make the hub refuse any attempt, also:",
             "# export HF_HUB_OFFLINE=1", ""]
    sh = Path(env_file) if env_file else layout.root / ENV_FILE
    sh.parent.mkdir(parents=True, exist_ok=True)
    sh.write_text("\n".join(shell))
    docker = sh.with_name(DOCKER_ENV_FILE) if env_file is None else sh.with_suffix(".env")
    docker.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return [sh, docker]


def print_plan(items: Sequence[FetchItem], layout: Layout, online: bool, out: Callable[[str], None] = print) -> None:
    """The listing: one line per file with size, check and source; totals."""
    out(f"bids_recon-fetch: {len(items)} file(s) into {layout.root}" + ("" if online else
        " -- OFFLINE: sizes below come from torchvision's table or are unknown; the hub patterns are not expanded"))
    width = max((len(i.label(layout.root)) for i in items), default=10)
    for item in items:
        size = size_text(item.size) if item.size is not None else "unknown" + ("" if online else " (offline)")
        size = ("~" + size) if item.approx else size
        check = item.check() if online or item.check() != "none published" else "(asked online)"
        out(f"  {item.group:<12} {item.label(layout.root):<{width}}  {size:>16}  {check:<22} {item.url}")
    known = sum(i.size for i in items if i.size is not None and i.kind not in ("copy", "unpack"))
    unknown = sum(1 for i in items if i.size is None)
    out(f"  total to download: {size_text(known)}" + (f" + {unknown} file(s) of unknown size" if unknown else ""))


def fetch(folder: Path, groups: Sequence[str], metrics: str | Iterable[str] = "all", rois: Any = None,
          generators: Mapping[str, Any] | None = None, *, dry_run: bool = False, timeout: float = 30.0,
          env_file: Path | None = None, mount_point: str | None = None,
          out: Callable[[str], None] = print) -> list[FetchItem]:
    """List (``dry_run``), or download and verify, every file of the chosen groups; write the manifest and the
    environment files. Arguments as :func:`build_plan`; returns the items.

    Raises
    ------
    ServiceUnavailableError
        No network (exit 69; nothing was created), or a download was interrupted (run again: it resumes).
    ChecksumError
        A file failed verification (exit 65; it was deleted).
    UsageError
        ``HF_HUB_OFFLINE`` is set while hub files are to be fetched (exit 64).
    BidsReconError
        A server refused a file (exit 1).
    """
    layout = Layout(folder)
    items = build_plan(layout.root, groups, metrics, rois, generators, out)
    online, reason = probe(probe_urls(items), timeout=min(timeout, 10.0))
    if online:
        items = resolve(items, timeout)
    if dry_run:
        print_plan(items, layout, online, out)
        if not online:
            out(f"(offline: {reason})")
        return items
    if not online:
        raise ServiceUnavailableError(
            f"no network: {reason}. bids_recon-fetch downloads from the internet; run it on a machine that has "
            "access (an HPC login node, a laptop) and copy or mount the folder, or use --dry-run to list the files")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") and any(i.kind == "hf" for i in items):
        raise UsageError("HF_HUB_OFFLINE is set in this environment: unset it for bids_recon-fetch")
    print_plan(items, layout, online, out)
    layout.root.mkdir(parents=True, exist_ok=True)
    fetched = _fetched_generators(groups, generators)
    manifest = {"bids_recon": __version__, "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "folder": str(layout.root), "groups": list(groups),
                "generators": {name: to_dict(params) for name, params in fetched.items()},
                "metrics": metrics if isinstance(metrics, str) else ",".join(metrics), "files": []}
    for item in items:
        manifest["files"].append(fetch_item(item, layout, timeout, out))
    manifest["environment"] = environment_lines(layout, mount_point)
    (layout.root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    written = write_environment(layout, mount_point, env_file)
    out(f"done: {len(items)} file(s) verified; manifest {layout.root / MANIFEST}")
    out(f"on the machine that runs bids_recon: source {written[0]}   (containers: --env-file {written[1]})")
    return items


__all__ = ["DOCKER_ENV_FILE", "ENV_FILE", "MANIFEST", "build_plan", "default_groups", "environment_lines", "fetch",
           "fetch_groups", "parse_groups", "print_plan", "write_environment"]
