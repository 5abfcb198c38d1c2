"""Downloads that resume and are verified: one file at a time, from an HTTP server or the Hugging Face hub.

The shared machinery of ``bids_recon-fetch`` (:mod:`bids_recon.offline`): a :class:`FetchItem` says where a file
comes from, where it goes and what to verify it against; the domain modules make the items of what they read
(:func:`bids_recon.generate.models.model_downloads`, :func:`bids_recon.evaluate.networks.network_downloads`,
:func:`bids_recon.rois.templates.template_downloads`, :func:`bids_recon.datasets.nsd.nsd_downloads`) and this
module asks the servers for sizes and checksums (:func:`resolve`) and fetches them (:func:`fetch_item`).

Downloads resume: a partial file is kept as ``<name>.part`` and continued with an HTTP ``Range`` request (Hugging
Face files resume through ``huggingface_hub``). Every file is verified before it is put in place: against a
sha256 (or its prefix, as torchvision names its files), the hub's sha256 (LFS) or git blob id, an S3 MD5 ETag
when it is one, and the announced size. A file that fails is deleted (:class:`ChecksumError`, exit 65).
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bids_recon import __version__
from bids_recon.errors import BadDataError, BidsReconError, ServiceUnavailableError

#: Hosts whose ETag is the MD5 of the file (Amazon S3, for single-part uploads).
MD5_ETAG_HOSTS = ("s3.amazonaws.com",)
CHUNK = 1 << 20


class ChecksumError(BadDataError):
    """A downloaded file does not match its published checksum or size (exit 65); it has been deleted."""


@dataclass
class FetchItem:
    """One file to fetch.

    Attributes
    ----------
    group : str
        The ``bids_recon-fetch --include`` group it belongs to (:func:`bids_recon.offline.fetch_groups`).
    dest : Path
        Where the file ends up (for Hugging Face files: the cache folder; see ``repo_id``).
    kind : str
        ``url`` (HTTP download), ``hf`` (a file of a Hugging Face repository; ``filename`` may be a pattern,
        expanded by :func:`resolve`), ``copy`` (the member ``source_file`` of the zip file ``archive``) or
        ``unpack`` (every member of ``archive``, unpacked into ``dest``, never overwriting a file).
    url : str
        Source URL (for ``hf``: the file's hub URL, for the listing).
    size : int or None
        Bytes, when known.
    size_source : str
        Where the size comes from (``HEAD``, ``hub API``, ``torchvision table (approx.)``, ``unknown (offline)``;
        for ``copy`` and ``unpack``: what the archive is, which is also how the files are vouched for).
    sha256, sha256_prefix, md5, git_sha1 : str
        Checksums to verify against (empty when not published).
    repo_id, repo_type, filename : str
        Hugging Face repository, ``model``/``dataset`` and file path (or pattern) in it.
    purpose : str
        What bids_recon uses it for.
    approx : bool
        ``size`` is approximate: shown, never enforced.
    archive, source_file : str
        The zip file of ``copy`` and ``unpack``, and the member ``copy`` takes.
    alternatives : tuple of str
        ``hf``: file names to take instead of ``filename``, the first the repository has (e.g. the
        ``.safetensors`` weights, else the ``.bin``).
    required : bool
        ``hf``: a repository without a matching file is an error (else the pattern is optional).
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
    archive: str = ""
    source_file: str = ""
    alternatives: tuple[str, ...] = ()
    required: bool = False

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
        if self.kind in ("copy", "unpack"):
            return self.size_source
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


def s3_md5(etag: str) -> str:
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
            report(f"present   {dest.name} ({size_text(dest.stat().st_size)}, {item.check()} ok)")
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
            report(f"complete  {part.name} (already {size_text(offset)})")
            return  # nothing left to send: the partial file is whole
        raise
    with response:
        status = response.status
        if status == 206:
            start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start.strip() != str(offset):
                raise ChecksumError(f"server resumed at byte {start}, asked for {offset}", part)
            mode = "ab"
            report(f"resuming  {item.dest.name} at {size_text(offset)}")
        else:
            mode, offset = "wb", 0
            report(f"fetching  {item.dest.name}" + (f" ({size_text(item.size)})" if item.size else ""))
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length and length.isdigit() else None
        done, last = offset, time.monotonic()
        with open(part, mode) as handle:
            while block := response.read(CHUNK):
                handle.write(block)
                done += len(block)
                if time.monotonic() - last > 10 and item.size:
                    report(f"          {item.dest.name}: {size_text(done)} of {size_text(item.size)}")
                    last = time.monotonic()
        if expected is not None and done < expected:  # the connection closed early: keep the part, resume later
            raise http.client.IncompleteRead(b"", expected - done)


def size_text(n: int | None) -> str:
    """Bytes as KiB, MiB or GiB with one decimal (``?`` when unknown)."""
    if n is None:
        return "?"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def url_name(url: str) -> str:
    """Last path component of a URL."""
    return os.path.basename(urlparse(url).path)


def unpack_archive(archive: Path, dest: Path) -> int:
    """Unpack the zip file ``archive`` into ``dest``, never overwriting a file nor writing outside ``dest``.

    Returns the number of files written.
    """
    written = 0
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = dest / info.filename
            if info.is_dir() or target.exists() or ".." in Path(info.filename).parts:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zipped.read(info))
            written += 1
    return written


# --------------------------------------------------------------------------------------------------------------
# asking the servers (sizes, checksums)


def hub_listing(repo_id: str, repo_type: str, timeout: float) -> list[dict[str, Any]]:
    """Files of a Hugging Face repository: ``filename, size, sha256 (LFS) or '', git_sha1``."""
    from huggingface_hub import HfApi

    info = HfApi().repo_info(repo_id, repo_type=repo_type, files_metadata=True, timeout=timeout)
    return [{"filename": s.rfilename, "size": s.size, "sha256": s.lfs.sha256 if s.lfs else "",
             "git_sha1": "" if s.lfs else (s.blob_id or "")} for s in (info.siblings or [])]


def resolve(items: list[FetchItem], timeout: float = 30.0,
            hf_listing: Callable[[str, str, float], list[dict[str, Any]]] | None = None) -> list[FetchItem]:
    """Ask the servers for sizes and checksums: HEAD for URLs, the hub's file list for repositories.

    Hugging Face entries are expanded from patterns to the repository's matching files; for CLIP the weight
    file is the first of the item's ``alternatives`` the repository has (CLIP's ``pytorch_model.bin`` when it has
    no ``model.safetensors``).
    """
    hf_listing = hf_listing or hub_listing
    listings: dict[tuple[str, str], list[dict[str, Any]]] = {}
    out: list[FetchItem] = []
    for item in items:
        if item.kind in ("copy", "unpack"):
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
                item.md5 = s3_md5(info.get("etag", ""))
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
            names = {f["filename"] for f in files}
            pattern = next((name for name in item.alternatives if name in names), item.filename)
            matched = [f for f in files if fnmatch.fnmatch(f["filename"], pattern)]
            if not matched and item.required:
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


# --------------------------------------------------------------------------------------------------------------
# fetching


def _hf_download(item: FetchItem, cache: Path, timeout: float) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(item.repo_id, item.filename, repo_type=item.repo_type, cache_dir=str(cache),
                                etag_timeout=timeout))


def fetch_item(item: FetchItem, layout: Layout, timeout: float = 60.0, report: Callable[[str], None] = print,
               hf_download: Callable[[FetchItem, Path, float], Path] | None = None) -> dict[str, Any]:
    """Fetch and verify one item; return its manifest entry."""
    entry: dict[str, Any] = {"group": item.group, "file": item.label(layout.root), "source": item.url,
                             "purpose": item.purpose}
    if item.kind == "unpack":
        count = unpack_archive(Path(item.archive), item.dest)
        report(f"unpacked  {item.label(layout.root)}/ ({Path(item.archive).name}, {count} new file(s))")
        entry.update(file=item.label(layout.root), verified=item.check(), size=item.size, sha256="")
        return entry
    if item.kind == "copy":
        item.dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(item.archive) as archive:
            data = archive.read(item.source_file)
        if not item.dest.is_file() or item.dest.read_bytes() != data:
            item.dest.write_bytes(data)
        report(f"copied    {item.label(layout.root)} (from the {item.size_source})")
        digests, entry["verified"] = file_digests(item.dest), item.check()
    elif item.kind == "hf":
        path = (hf_download or _hf_download)(item, layout.hf_hub_cache, timeout)
        try:
            digests = verify(path.resolve(), item)
        except ChecksumError:
            blob = path.resolve()
            path.unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            raise
        report(f"ok        {item.label(layout.root)} ({size_text(path.stat().st_size)}, {item.check()} verified)")
        entry["file"], entry["verified"] = str(path.relative_to(layout.root)), item.check()
    else:
        digests = download_url(item, timeout, report)
        report(f"ok        {item.label(layout.root)} ({size_text(item.dest.stat().st_size)}, {item.check()} verified)")
        entry["verified"] = item.check()
    entry.update(size=(layout.root / entry["file"]).stat().st_size, sha256=digests["sha256"])
    return entry


__all__ = ["ChecksumError", "FetchItem", "Layout", "download_url", "fetch_item", "file_digests", "head",
           "hub_listing", "is_network_error", "probe", "probe_urls", "resolve", "s3_md5", "size_text",
           "unpack_archive", "url_name", "verify"]
