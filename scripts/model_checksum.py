#!/usr/bin/env python
"""Print (or check) the sha256 of a model folder: one hash over every file's relative path and content.

Used by the Dockerfile to check a diffusion model baked into the image (``--build-arg DIFFUSION_MODEL=bake``),
and by users to get the value to pass as ``DIFFUSION_MODEL_SHA256``. Standard library only (it runs in the
image's bare Python before bids_recon is installed).

The hash is sha256 over the lines ``<sha256 of file>  <path relative to the folder, POSIX>\\n`` of every regular
file, sorted by path; hidden files and folders (``.git``, ``.cache``) are left out.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: Path) -> str:
    """The folder's hash (see the module docstring)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise FileNotFoundError(f"no files in {folder}")
    manifest = "".join(f"{file_sha256(p)}  {p.relative_to(folder).as_posix()}\n" for p in files)
    return hashlib.sha256(manifest.encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Print the hash, or with ``--expect`` exit 1 when it differs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--expect", default=None, help="expected sha256; exit 1 if the folder's differs")
    args = parser.parse_args(argv)
    try:
        digest = folder_sha256(args.folder)
    except FileNotFoundError as exc:
        print(f"model_checksum: {exc}", file=sys.stderr)
        return 1
    if args.expect is None:
        print(digest)
        return 0
    if digest != args.expect.strip().lower():
        print(f"model_checksum: {args.folder} has sha256 {digest}, expected {args.expect}", file=sys.stderr)
        return 1
    print(f"{args.folder}: sha256 OK ({digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
