"""``bids_recon-fetch``: download everything a configuration needs into one folder, for offline runs.

Run it on a machine with internet (an HPC login node, a laptop), then copy or mount the folder where bids_recon
runs and source the environment file it writes::

    bids_recon-fetch /shared/bids_recon-cache --dry-run     # list files and sizes, download nothing
    bids_recon-fetch /shared/bids_recon-cache               # download, verify, write the environment file
    source /shared/bids_recon-cache/bids_recon-env.sh       # on the compute node, then run bids_recon

The folder is laid out as the caches expect::

    FOLDER/torch/hub/checkpoints/      TORCH_HOME: torchvision and SwAV weights of the evaluation networks
    FOLDER/huggingface/hub/            HF_HOME/hub: the diffusion model (diffusers layout) and CLIP ViT-L/14
    FOLDER/templateflow/               TEMPLATEFLOW_HOME: the atlas, its label table and the brain mask
    FOLDER/nsd/                        NSD metadata / stimuli (only with --include nsd-metadata / nsd-stimuli)
    FOLDER/bids_recon-env.sh           ``export HF_HOME=... TORCH_HOME=... TEMPLATEFLOW_HOME=...`` (source it)
    FOLDER/bids_recon.env              the same as KEY=VALUE lines (``docker --env-file``, ``apptainer --env-file``)
    FOLDER/bids_recon-fetch.json       manifest: every file, its size, sha256, source and how it was verified

What is fetched: the diffusion model ``--model`` (files matching ``bids_recon.generate.models.DOWNLOAD_PATTERNS``),
the networks of ``--metrics`` (:mod:`bids_recon.evaluate.networks`), the TemplateFlow files of the ROI settings
(:func:`bids_recon.rois.templates.required_templates`) and optionally NSD files. ``--config`` reads the model and
ROI settings from a bids_recon configuration file.

Downloads resume: a partial file is kept as ``<name>.part`` and continued with an HTTP ``Range`` request (Hugging
Face files resume through ``huggingface_hub``). Every file is verified before it is put in place: torchvision
files against the sha256 prefix in their name, Hugging Face files against the hub's sha256 (LFS) or git blob id,
S3 files (TemplateFlow, NSD) against their MD5 ETag when it is one, and all against the announced size. A file
that fails is deleted and the command stops (exit 65).

Exit codes: 0 done; 1 a server refused a file (an HTTP error, e.g. a gated model without a login); 64 bad
arguments; 65 a download failed verification (the file was deleted); 66 a local input is missing (the
``--config`` file, TemplateFlow's skeleton); 69 the network cannot be reached (nothing was downloaded; run it
where there is internet, or use ``--dry-run`` to see what it would fetch) or a download was interrupted (run
the command again: it resumes).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import hashlib
import http.client
import importlib.util
import json
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from bids_recon import __version__
from bids_recon.errors import (
    BadDataError,
    BidsReconError,
    ExitCode,
    MissingInputError,
    ServiceUnavailableError,
    UsageError,
)

#: What can be fetched (``--include``); the first three are the default.
GROUPS = ("diffusion", "metrics", "templates", "nsd-metadata", "nsd-stimuli")
DEFAULT_GROUPS = ("diffusion", "metrics", "templates")
#: TemplateFlow's S3 bucket (``templateflow.conf.cache.CacheConfig.s3_root``; templateflow's own ``_s3_get``
#: downloads ``<s3_root>/<path relative to TEMPLATEFLOW_HOME>``).
TEMPLATEFLOW_S3 = "https://templateflow.s3.amazonaws.com"
NSD_S3 = "https://natural-scenes-dataset.s3.amazonaws.com"
#: NSD files (relative to the bucket) and what they are for.
NSD_METADATA = {
    "nsddata/experiments/nsd/nsd_stim_info_merged.csv": "NSD image table: nsdId, cocoId, cocoSplit, shared1000",
    "nsddata/experiments/nsd/nsd_expdesign.mat": "NSD design: sharedix (the shared test images), trial order",
}
NSD_STIMULI = {"nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5": "all 73,000 NSD images (imgBrick, 425 px, ~37 GB)"}
#: COCO 2017 captions (Takagi & Nishimoto's caption source for NSD, joined by the table's cocoId/cocoSplit).
COCO_ANNOTATIONS = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
#: Hosts whose ETag is the MD5 of the file (Amazon S3, for single-part uploads).
MD5_ETAG_HOSTS = ("s3.amazonaws.com",)
ENV_FILE = "bids_recon-env.sh"
DOCKER_ENV_FILE = "bids_recon.env"
MANIFEST = "bids_recon-fetch.json"
CHUNK = 1 << 20


class ChecksumError(BadDataError):
    """A downloaded file does not match its published checksum or size (exit 65); it has been deleted."""


@dataclass
class FetchItem:
    """One file to fetch.

    Attributes
    ----------
    group : str
        One of :data:`GROUPS`.
    dest : Path
        Where the file ends up (for Hugging Face files: the cache folder; see ``repo_id``).
    kind : str
        ``url`` (HTTP download), ``hf`` (a file of a Hugging Face repository), ``copy`` (a file of
        TemplateFlow's skeleton shipped with the templateflow package) or ``skeleton`` (the whole skeleton,
        unpacked into ``dest``).
    url : str
        Source URL (for ``hf``: the file's hub URL, for the listing).
    size : int or None
        Bytes, when known.
    size_source : str
        Where the size comes from (``HEAD``, ``hub API``, ``torchvision table (approx.)``, ``unknown (offline)``).
    sha256, sha256_prefix, md5, git_sha1 : str
        Checksums to verify against (empty when not published).
    repo_id, repo_type, filename : str
        Hugging Face repository, ``model``/``dataset`` and file path in it.
    purpose : str
        What bids_recon uses it for.
    """

    group: str
    dest: Path
    kind: str
    url: str
    size: int | None = None
    size_source: str = "unknown"
    sha256: str = ""
    sha256_prefix: str = ""
    md5: str = ""
    git_sha1: str = ""
    repo_id: str = ""
    repo_type: str = "model"
    filename: str = ""
    purpose: str = ""
    approx: bool = False
    source_file: str = ""

    def label(self, folder: Path) -> str:
        """The file's path as shown in listings (relative to the fetch folder)."""
        if self.kind == "hf":
            return f"huggingface/hub/{self.repo_type}s--{self.repo_id.replace('/', '--')}/{self.filename}"
        try:
            return self.dest.relative_to(folder).as_posix()
        except ValueError:
            return str(self.dest)

    def check(self) -> str:
        """The verification that will be applied."""
        if self.kind in ("copy", "skeleton"):
            return "templateflow package"
        if self.sha256:
            return f"sha256 {self.sha256[:12]}"
        if self.git_sha1:
            return f"git sha1 {self.git_sha1[:12]}"
        if self.sha256_prefix:
            return f"sha256 {self.sha256_prefix}*"
        if self.md5:
            return f"md5 {self.md5[:12]}"
        return "size" if self.size is not None and not self.approx else "none published"


@dataclass
class Layout:
    """The cache folders inside the fetch folder."""

    root: Path
    torch_home: Path = field(init=False)
    hf_home: Path = field(init=False)
    templateflow_home: Path = field(init=False)
    nsd: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().absolute()
        self.torch_home = self.root / "torch"
        self.hf_home = self.root / "huggingface"
        self.templateflow_home = self.root / "templateflow"
        self.nsd = self.root / "nsd"

    @property
    def checkpoints(self) -> Path:
        """``TORCH_HOME/hub/checkpoints``."""
        return self.torch_home / "hub" / "checkpoints"

    @property
    def hf_hub_cache(self) -> Path:
        """``HF_HOME/hub``."""
        return self.hf_home / "hub"


# --------------------------------------------------------------------------------------------------------------
# HTTP


def _opener() -> urllib.request.OpenerDirector:
    """urllib with the environment's proxies (HTTPS_PROXY, NO_PROXY), which HPC login nodes often need."""
    return urllib.request.build_opener()


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None, timeout: float = 30.0) -> Any:
    req = urllib.request.Request(url, method=method, headers={"User-Agent": f"bids_recon-fetch/{__version__}",
                                                              **(headers or {})})
    host = urlparse(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):  # never send loopback requests through a proxy
        return urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=timeout)
    return _opener().open(req, timeout=timeout)


def is_network_error(exc: BaseException) -> bool:
    """True for errors that mean "no network" (DNS, refused, unreachable, timeout), not an HTTP status."""
    if isinstance(exc, urllib.error.HTTPError):
        return False
    return isinstance(exc, urllib.error.URLError | OSError | TimeoutError)


def probe(urls: Sequence[str], timeout: float = 10.0) -> tuple[bool, str]:
    """Whether any of ``urls`` answers (any HTTP status counts): ``(online, reason)``."""
    reasons = []
    for url in urls:
        try:
            with _request(url, "HEAD", timeout=timeout):
                return True, ""
        except urllib.error.HTTPError:
            return True, ""  # the server answered
        except Exception as exc:  # noqa: BLE001 - every failure to connect is a reason to report
            reason = getattr(exc, "reason", exc)
            reasons.append(f"{urlparse(url).hostname}: {reason}")
    return False, "; ".join(reasons)


def probe_urls(items: Sequence[FetchItem], hosts: int = 3) -> list[str]:
    """One URL for each of the first ``hosts`` distinct servers of a plan (Hugging Face for hub files)."""
    urls: dict[str, str] = {}
    for item in items:
        url = "https://huggingface.co" if item.kind == "hf" else item.url if item.kind == "url" else ""
        if url:
            urls.setdefault(urlparse(url).hostname or url, url)
    return list(urls.values())[:hosts] or ["https://huggingface.co"]


def head(url: str, timeout: float = 30.0) -> dict[str, str]:
    """Response headers of a HEAD request (lower-case names)."""
    with _request(url, "HEAD", timeout=timeout) as response:
        return {k.lower(): v for k, v in response.headers.items()}


def _s3_md5(etag: str) -> str:
    """The MD5 an S3 ETag states (single-part uploads: 32 hex digits), else ''."""
    etag = etag.strip().strip('"').lower()
    return etag if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) else ""


def file_digests(path: Path) -> dict[str, str]:
    """sha256, md5 and git blob sha1 of a file, in one read."""
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), path.stat().st_size
    git = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK * 4):
            sha256.update(block)
            md5.update(block)
            git.update(block)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest(), "git_sha1": git.hexdigest()}


def verify(path: Path, item: FetchItem) -> dict[str, str]:
    """Check a file against the item's size and checksums; return its digests.

    Raises
    ------
    ChecksumError
        Size or a checksum differs (the caller deletes the file).
    """
    size = path.stat().st_size
    if item.size is not None and not item.approx and size != item.size:
        raise ChecksumError(f"{size} bytes, expected {item.size} (from {item.size_source})", path)
    digests = file_digests(path)
    checks = [("sha256", item.sha256, digests["sha256"] == item.sha256),
              ("sha256 prefix", item.sha256_prefix, digests["sha256"].startswith(item.sha256_prefix)),
              ("md5 (S3 ETag)", item.md5, digests["md5"] == item.md5),
              ("git blob sha1", item.git_sha1, digests["git_sha1"] == item.git_sha1)]
    for name, expected, ok in checks:
        if expected and not ok:
            got = digests["md5" if name.startswith("md5") else "git_sha1" if name.startswith("git") else "sha256"]
            raise ChecksumError(f"{name} is {got}, expected {expected}: the download is corrupt or not the "
                                f"published file", path)
    return digests


def download_url(item: FetchItem, timeout: float = 60.0, report: Callable[[str], None] = print) -> dict[str, str]:
    """Download ``item.url`` to ``item.dest`` through ``<dest>.part``, resuming a partial file; verify; move.

    A present ``.part`` file is continued with ``Range: bytes=<size>-``; a server that answers 200 instead of
    206 sends the whole file again, which replaces the partial one. Returns the file's digests.

    Raises
    ------
    ChecksumError
        The file does not match (it is deleted, ``.part`` included).
    ServiceUnavailableError
        The connection failed (the ``.part`` file is kept for the next run).
    """
    dest, part = item.dest, item.dest.with_name(item.dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and dest.stat().st_size == 0:  # TemplateFlow's placeholder, or an empty leftover
        dest.unlink()
    if dest.is_file():
        try:
            digests = verify(dest, item)
            report(f"present   {dest.name} ({_size(dest.stat().st_size)}, {item.check()} ok)")
            return digests
        except ChecksumError as exc:
            report(f"replacing {dest.name}: {exc}")
            dest.unlink()
    offset = part.stat().st_size if part.is_file() else 0
    if item.size is not None and not item.approx and offset > item.size:
        part.unlink()
        offset = 0
    try:
        _fetch_into(item.url, part, offset, item, timeout, report)
    except urllib.error.HTTPError as exc:
        raise BidsReconError(f"{item.url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
        raise ServiceUnavailableError(f"download of {item.url} interrupted ({getattr(exc, 'reason', exc)}); "
                                      f"run bids_recon-fetch again to resume from {part}") from exc
    try:
        digests = verify(part, item)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return digests


def _fetch_into(url: str, part: Path, offset: int, item: FetchItem, timeout: float,
                report: Callable[[str], None]) -> None:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = _request(url, headers=headers, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset and (item.size is None or offset == item.size):
            report(f"complete  {part.name} (already {_size(offset)})")
            return  # nothing left to send: the partial file is whole
        raise
    with response:
        status = response.status
        if status == 206:
            start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start.strip() != str(offset):
                raise ChecksumError(f"server resumed at byte {start}, asked for {offset}", part)
            mode = "ab"
            report(f"resuming  {item.dest.name} at {_size(offset)}")
        else:
            mode, offset = "wb", 0
            report(f"fetching  {item.dest.name}" + (f" ({_size(item.size)})" if item.size else ""))
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length and length.isdigit() else None
        done, last = offset, time.monotonic()
        with open(part, mode) as handle:
            while block := response.read(CHUNK):
                handle.write(block)
                done += len(block)
                if time.monotonic() - last > 10 and item.size:
                    report(f"          {item.dest.name}: {_size(done)} of {_size(item.size)}")
                    last = time.monotonic()
        if expected is not None and done < expected:  # the connection closed early: keep the part, resume later
            raise http.client.IncompleteRead(b"", expected - done)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# --------------------------------------------------------------------------------------------------------------
# the plan


def templateflow_skeleton() -> Path:
    """TemplateFlow's skeleton zip shipped with the installed templateflow (found without importing it).

    Importing ``templateflow.conf`` would populate ``$TEMPLATEFLOW_HOME`` as a side effect; the package's
    location is enough.
    """
    spec = importlib.util.find_spec("templateflow")
    if spec is None or not spec.submodule_search_locations:
        raise MissingInputError("the templateflow package is not installed (pip install templateflow)")
    skeleton = Path(list(spec.submodule_search_locations)[0]) / "conf" / "templateflow-skel.zip"
    if not skeleton.is_file():
        raise MissingInputError("templateflow's skeleton is missing from the installed package", skeleton)
    return skeleton


_ENTITY_KEYS = {"resolution": "res", "atlas": "atlas", "desc": "desc", "cohort": "cohort", "label": "label",
                "hemi": "hemi", "density": "den", "space": "space"}


def _parse_template_name(name: str) -> dict[str, str] | None:
    base = name.rsplit("/", 1)[-1]
    if not base.startswith("tpl-") or "." not in base:
        return None
    stem, _, extension = base.partition(".")
    parts = stem.split("_")
    entities = dict(p.split("-", 1) for p in parts[:-1] if "-" in p)
    entities["suffix"], entities["extension"] = parts[-1], "." + extension
    return entities


def match_templates(names: Sequence[str], template: str, query: dict[str, object]) -> list[str]:
    """Skeleton entries that a TemplateFlow query selects (the entities given must match; others are free)."""
    wanted = {_ENTITY_KEYS.get(k, k): v for k, v in query.items()}
    out = []
    for name in names:
        entities = _parse_template_name(name)
        if entities is None or entities.get("tpl") != template or not name.startswith(f"tpl-{template}/"):
            continue
        if all(_same(entities.get(key), value) for key, value in wanted.items()):
            out.append(name)
    return out


def _same(found: str | None, wanted: object) -> bool:
    if found is None:
        return False
    text = str(wanted)
    if found.isdigit() and text.isdigit():
        return int(found) == int(text)
    if text.startswith(".") or found.startswith("."):
        return found.lstrip(".") == text.lstrip(".")
    return found == text


def extract_skeleton(home: Path) -> int:
    """Unpack TemplateFlow's skeleton into ``home`` (as templateflow does on first use), never overwriting a file.

    The skeleton holds every template's folder, its ``template_description.json``, the label tables and 0-byte
    placeholders for the images; a TEMPLATEFLOW_HOME without it would hold only the downloaded files. Returns the
    number of files written.
    """
    written = 0
    with zipfile.ZipFile(templateflow_skeleton()) as archive:
        for info in archive.infolist():
            dest = home / info.filename
            if info.is_dir() or dest.exists() or ".." in Path(info.filename).parts:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(archive.read(info))
            written += 1
    return written


def template_items(layout: Layout, queries: Sequence[Any]) -> list[FetchItem]:
    """The TemplateFlow files of ``queries`` (:class:`bids_recon.rois.templates.TemplateQuery`), after the skeleton."""
    skeleton = templateflow_skeleton()
    with zipfile.ZipFile(skeleton) as archive:
        infos = {i.filename: i for i in archive.infolist() if not i.is_dir()}
    items = [FetchItem("templates", layout.templateflow_home, "skeleton", f"templateflow package: {skeleton.name}",
                       sum(i.file_size for i in infos.values()), "templateflow package",
                       purpose=f"TemplateFlow's skeleton ({len(infos)} entries: folders, descriptions, placeholders)")]
    for query in queries:
        found = match_templates(list(infos), query.template, query.query)
        if len(found) != 1:
            raise UsageError(f"TemplateFlow query {query.describe()} matches {len(found)} files in templateflow's "
                             f"skeleton ({', '.join(found[:3]) or 'none'}); it must match exactly one")
        rel = found[0]
        dest = layout.templateflow_home / rel
        if infos[rel].file_size > 0:  # a real file in the skeleton (label tables, JSON): copied, no download
            items.append(FetchItem("templates", dest, "copy", f"templateflow package: {rel}", infos[rel].file_size,
                                   "templateflow package", purpose=query.purpose, source_file=rel))
        else:
            items.append(FetchItem("templates", dest, "url", f"{TEMPLATEFLOW_S3}/{quote(rel)}",
                                   purpose=query.purpose))
    return items


def metric_items(layout: Layout, metrics: Any) -> list[FetchItem]:
    """The weight files of the networks the selected metrics need."""
    from bids_recon.evaluate.networks import CLIP_WEIGHT_FILES, network_specs
    from bids_recon.evaluate.standard import METRICS, select_metrics

    selected = select_metrics(metrics)
    needed = [n for n in network_specs() if n in {METRICS[m].network for m in selected}]
    items = []
    for name, spec in network_specs().items():
        if name not in needed:
            continue
        users = ", ".join(METRICS[m].label for m in selected if METRICS[m].network == name)
        if spec.kind == "clip":
            for filename in ("config.json", CLIP_WEIGHT_FILES[0]):
                items.append(FetchItem("metrics", layout.hf_hub_cache, "hf",
                                       f"https://huggingface.co/{spec.source}/resolve/main/{filename}",
                                       repo_id=spec.source, filename=filename, purpose=f"{spec.title} ({users})"))
            continue
        size = int(spec.approx_size_mib * (1 << 20)) if spec.approx_size_mib else None
        items.append(FetchItem("metrics", layout.checkpoints / spec.filename, "url", spec.source, size,
                               "torchvision table (approx.)" if size else "unknown", sha256_prefix=spec.sha256_prefix,
                               purpose=f"{spec.title} ({users})", approx=size is not None))
    return items


def diffusion_items(layout: Layout, model: str) -> list[FetchItem]:
    """The files of the diffusion model (one listing entry per pattern until the hub is asked)."""
    from bids_recon.generate.models import DOWNLOAD_PATTERNS

    return [FetchItem("diffusion", layout.hf_hub_cache, "hf", f"https://huggingface.co/{model}", repo_id=model,
                      filename=pattern, purpose="diffusion model (generator)") for pattern in DOWNLOAD_PATTERNS]


def nsd_items(layout: Layout, groups: Sequence[str]) -> list[FetchItem]:
    """NSD metadata (and stimuli) from the NSD bucket, COCO captions from COCO."""
    items = []
    files = {**(NSD_METADATA if "nsd-metadata" in groups else {}), **(NSD_STIMULI if "nsd-stimuli" in groups else {})}
    for rel, purpose in files.items():
        group = "nsd-stimuli" if rel in NSD_STIMULI else "nsd-metadata"
        items.append(FetchItem(group, layout.nsd / rel, "url", f"{NSD_S3}/{rel}", purpose=purpose))
    if "nsd-metadata" in groups:
        items.append(FetchItem("nsd-metadata", layout.nsd / "coco" / url_name(COCO_ANNOTATIONS), "url",
                               COCO_ANNOTATIONS, purpose="COCO 2017 captions (captions_train/val2017.json)"))
    return items


def url_name(url: str) -> str:
    """Last path component of a URL."""
    return os.path.basename(urlparse(url).path)


# --------------------------------------------------------------------------------------------------------------
# asking the servers (sizes, checksums)


def _hf_listing(repo_id: str, repo_type: str, timeout: float) -> list[dict[str, Any]]:
    """Files of a Hugging Face repository: ``filename, size, sha256 (LFS) or '', git_sha1``."""
    from huggingface_hub import HfApi

    info = HfApi().repo_info(repo_id, repo_type=repo_type, files_metadata=True, timeout=timeout)
    return [{"filename": s.rfilename, "size": s.size, "sha256": s.lfs.sha256 if s.lfs else "",
             "git_sha1": "" if s.lfs else (s.blob_id or "")} for s in (info.siblings or [])]


def resolve(items: list[FetchItem], timeout: float = 30.0,
            hf_listing: Callable[[str, str, float], list[dict[str, Any]]] | None = None) -> list[FetchItem]:
    """Ask the servers for sizes and checksums: HEAD for URLs, the hub's file list for repositories.

    Hugging Face entries are expanded from patterns to the repository's matching files; for CLIP the weight
    file falls back to ``pytorch_model.bin`` when the repository has no ``model.safetensors``.
    """
    from bids_recon.evaluate.networks import CLIP_WEIGHT_FILES

    hf_listing = hf_listing or _hf_listing
    listings: dict[tuple[str, str], list[dict[str, Any]]] = {}
    out: list[FetchItem] = []
    for item in items:
        if item.kind in ("copy", "skeleton"):
            out.append(item)
        elif item.kind == "url":
            try:
                info = head(item.url, timeout)
            except urllib.error.HTTPError as exc:
                raise BidsReconError(f"{item.url}: HTTP {exc.code} {exc.reason} (the file is not available there)"
                                     ) from exc
            except (urllib.error.URLError, OSError) as exc:
                raise ServiceUnavailableError(f"{item.url}: {getattr(exc, 'reason', exc)}") from exc
            if "content-length" in info:
                item.size, item.size_source, item.approx = int(info["content-length"]), "HEAD", False
            if (urlparse(item.url).hostname or "").endswith(MD5_ETAG_HOSTS):
                item.md5 = _s3_md5(info.get("etag", ""))
            out.append(item)
        else:
            key = (item.repo_id, item.repo_type)
            if key not in listings:
                try:
                    listings[key] = hf_listing(item.repo_id, item.repo_type, timeout)
                except Exception as exc:  # gated, not found, network
                    raise BidsReconError(f"cannot list {item.repo_type} {item.repo_id} on the Hugging Face hub "
                                         f"({exc}); for a gated model, accept its licence on its page and log in "
                                         "(`hf auth login` or HF_TOKEN)") from exc
            files = listings[key]
            pattern = item.filename
            if item.group == "metrics" and pattern in CLIP_WEIGHT_FILES:
                names = {f["filename"] for f in files}
                pattern = next((w for w in CLIP_WEIGHT_FILES if w in names), pattern)
            matched = [f for f in files if fnmatch.fnmatch(f["filename"], pattern)]
            if not matched and item.group == "metrics":
                raise BidsReconError(f"{item.repo_id} has no file {pattern} on the hub")
            for f in matched:
                if any(o.kind == "hf" and o.repo_id == item.repo_id and o.filename == f["filename"] for o in out):
                    continue
                out.append(FetchItem(item.group, item.dest, "hf",
                                     f"https://huggingface.co/{item.repo_id}/resolve/main/{f['filename']}",
                                     f["size"], "hub API", sha256=f["sha256"], git_sha1=f["git_sha1"],
                                     repo_id=item.repo_id, repo_type=item.repo_type, filename=f["filename"],
                                     purpose=item.purpose))
    return out


def build_plan(folder: Path, groups: Sequence[str], model: str | None, metrics: Any,
               rois: Any = None) -> list[FetchItem]:
    """Every file of the chosen groups, before asking any server."""
    from bids_recon.rois.templates import required_templates

    layout = Layout(folder)
    items: list[FetchItem] = []
    if "templates" in groups:
        items += template_items(layout, required_templates(rois))
    if "metrics" in groups:
        items += metric_items(layout, metrics)
    if "diffusion" in groups and model:
        items += diffusion_items(layout, model)
    items += nsd_items(layout, groups)
    return items


# --------------------------------------------------------------------------------------------------------------
# doing it


def _hf_download(item: FetchItem, cache: Path, timeout: float) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(item.repo_id, item.filename, repo_type=item.repo_type, cache_dir=str(cache),
                                etag_timeout=timeout))


def fetch_item(item: FetchItem, layout: Layout, timeout: float = 60.0, report: Callable[[str], None] = print,
               hf_download: Callable[[FetchItem, Path, float], Path] | None = None) -> dict[str, Any]:
    """Fetch and verify one item; return its manifest entry."""
    entry: dict[str, Any] = {"group": item.group, "file": item.label(layout.root), "source": item.url,
                             "purpose": item.purpose}
    if item.kind == "skeleton":
        count = extract_skeleton(item.dest)
        report(f"unpacked  {item.label(layout.root)}/ (TemplateFlow's skeleton, {count} new file(s))")
        entry.update(file=item.label(layout.root), verified="templateflow package", size=item.size, sha256="")
        return entry
    if item.kind == "copy":
        item.dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(templateflow_skeleton()) as archive:
            data = archive.read(item.source_file)
        if not item.dest.is_file() or item.dest.read_bytes() != data:
            item.dest.write_bytes(data)
        report(f"copied    {item.label(layout.root)} (from the templateflow package)")
        digests, entry["verified"] = file_digests(item.dest), "templateflow package"
    elif item.kind == "hf":
        path = (hf_download or _hf_download)(item, layout.hf_hub_cache, timeout)
        try:
            digests = verify(path.resolve(), item)
        except ChecksumError:
            blob = path.resolve()
            path.unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            raise
        report(f"ok        {item.label(layout.root)} ({_size(path.stat().st_size)}, {item.check()} verified)")
        entry["file"], entry["verified"] = str(path.relative_to(layout.root)), item.check()
    else:
        digests = download_url(item, timeout, report)
        report(f"ok        {item.label(layout.root)} ({_size(item.dest.stat().st_size)}, {item.check()} verified)")
        entry["verified"] = item.check()
    entry.update(size=(layout.root / entry["file"]).stat().st_size, sha256=digests["sha256"])
    return entry


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
        size = _size(item.size) if item.size is not None else "unknown" + ("" if online else " (offline)")
        size = ("~" + size) if item.approx else size
        check = item.check() if online or item.check() != "none published" else "(asked online)"
        out(f"  {item.group:<12} {item.label(layout.root):<{width}}  {size:>16}  {check:<22} {item.url}")
    known = sum(i.size for i in items if i.size is not None and i.kind not in ("copy", "skeleton"))
    unknown = sum(1 for i in items if i.size is None)
    out(f"  total to download: {_size(known)}" + (f" + {unknown} file(s) of unknown size" if unknown else ""))


# --------------------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bids_recon-fetch``."""
    parser = argparse.ArgumentParser(
        prog="bids_recon-fetch",
        description="Download the diffusion model, the evaluation networks and the TemplateFlow files that a "
                    "bids_recon configuration needs into one folder, laid out as the caches expect, for offline "
                    "runs. Verifies checksums, resumes partial downloads, writes an environment file.",
        epilog="Exit codes: 0 done, 1 a server refused a file, 64 bad arguments, 65 a file failed verification "
               "(deleted), 66 a local input is missing, 69 no network or an interrupted download (run it again to "
               "resume; --dry-run works offline).")
    parser.add_argument("folder", type=Path, help="the folder to fill (created if needed)")
    parser.add_argument("--include", default=",".join(DEFAULT_GROUPS),
                        help=f"comma list of what to fetch, from {', '.join(GROUPS)} (default: %(default)s); "
                             "nsd-stimuli is ~37 GB; NSD files are under the NSD terms of use")
    parser.add_argument("--model", default=None,
                        help="diffusion model (Hugging Face id; default: the configuration's, else "
                             "CompVis/stable-diffusion-v1-4); a local folder is not fetched")
    parser.add_argument("--metrics", default=None,
                        help="comma list of metrics whose networks to fetch (bids_recon.evaluate.standard.METRICS "
                             "ids; default: the configuration's [workflow.evaluate] metrics, else all)")
    parser.add_argument("--config", type=Path, default=None,
                        help="a bids_recon configuration (TOML) to read the model and ROI settings from")
    parser.add_argument("--dry-run", action="store_true", help="list files and sizes; download nothing")
    parser.add_argument("--env-file", type=Path, default=None,
                        help=f"where to write the environment file (default: FOLDER/{ENV_FILE})")
    parser.add_argument("--mount-point", default=None,
                        help="path at which the folder will be seen where bids_recon runs (e.g. /cache in a "
                             "container); the environment file uses it instead of FOLDER")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a server (default 30)")
    return parser


def _groups(text: str) -> list[str]:
    groups = [g.strip() for g in text.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise UsageError(f"--include: unknown {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return groups


def _from_config(path: Path | None) -> tuple[str | None, Any, bool, Any]:
    """``(model id, ROI settings, uses the diffusion generator, metrics)`` of a configuration file (defaults:
    None)."""
    if path is None:
        return None, None, True, None
    from bids_recon.config import Config
    from bids_recon.workflows.generators import get_generator

    config = Config.load(path)  # MissingInputError (66) when absent
    workflow = config.workflow
    generate = workflow.generate
    return (generate.diffusion.model, workflow.rois, "diffusion" in get_generator(generate.generator).fetch_groups,
            workflow.evaluate.metrics)


def _default_model() -> str:
    from bids_recon.generate.diffusion import DiffusionParams

    return DiffusionParams.model


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    """Carry out a parsed command; raise :class:`BidsReconError` subclasses for the documented exits."""
    groups = _groups(args.include)
    config_model, rois, uses_diffusion, config_metrics = _from_config(args.config)
    model = args.model or config_model or _default_model()
    metrics = args.metrics or config_metrics or "all"
    if "diffusion" in groups and args.model is None and args.config is not None and not uses_diffusion:
        out("the configuration does not use the diffusion generator: its model is not fetched (give --model)")
        model = None
    if model and (Path(model).expanduser().exists() or model.startswith(("/", "./", "../", "~"))):
        out(f"--model {model} is a local folder: nothing to fetch for it")
        model = None
    layout = Layout(args.folder)
    items = build_plan(layout.root, groups, model, metrics, rois)
    online, reason = probe(probe_urls(items), timeout=min(args.timeout, 10.0))
    if online:
        items = resolve(items, args.timeout)
    if args.dry_run:
        print_plan(items, layout, online, out)
        if not online:
            out(f"(offline: {reason})")
        return int(ExitCode.SUCCESS)
    if not online:
        raise ServiceUnavailableError(
            f"no network: {reason}. bids_recon-fetch downloads from the internet; run it on a machine that has "
            "access (an HPC login node, a laptop) and copy or mount the folder, or use --dry-run to list the files")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") and any(i.kind == "hf" for i in items):
        raise UsageError("HF_HUB_OFFLINE is set in this environment: unset it for bids_recon-fetch")
    print_plan(items, layout, online, out)
    layout.root.mkdir(parents=True, exist_ok=True)
    manifest = {"bids_recon": __version__, "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "folder": str(layout.root), "groups": groups, "model": model,
                "metrics": metrics if isinstance(metrics, str) else ",".join(metrics), "files": []}
    for item in items:
        manifest["files"].append(fetch_item(item, layout, args.timeout, out))
    manifest["environment"] = environment_lines(layout, args.mount_point)
    (layout.root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    written = write_environment(layout, args.mount_point, args.env_file)
    out(f"done: {len(items)} file(s) verified; manifest {layout.root / MANIFEST}")
    out(f"on the machine that runs bids_recon: source {written[0]}   (containers: --env-file {written[1]})")
    return int(ExitCode.SUCCESS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bids_recon-fetch``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BidsReconError as exc:
        print(f"bids_recon-fetch: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("bids_recon-fetch: interrupted; run it again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["ChecksumError", "FetchItem", "Layout", "build_parser", "build_plan", "download_url", "main", "resolve",
           "verify", "write_environment"]
