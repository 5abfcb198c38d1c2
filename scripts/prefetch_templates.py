#!/usr/bin/env python
"""Download the TemplateFlow files bids_recon needs into one TEMPLATEFLOW_HOME, then check them offline.

The same command fills the container's template folder at build time (Dockerfile) and a shared cache on an HPC
login node that has internet; compute nodes then read that folder with ``TEMPLATEFLOW_HOME`` set and no network.
What is fetched comes from ``bids_recon.rois.templates.required_templates()`` (the atlas, its label table and
the template's brain mask), i.e. from the same settings the ROI stage queries.

Examples::

    python scripts/prefetch_templates.py --templateflow-home /shared/templateflow       # download + check
    python scripts/prefetch_templates.py --templateflow-home /shared/templateflow --check  # offline check only
    python scripts/prefetch_templates.py --list                                         # what would be fetched
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Fetch (unless ``--check``) and verify the templates; exit 1 if any is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templateflow-home", type=Path, default=None,
                        help="folder to fill (default: $TEMPLATEFLOW_HOME, else TemplateFlow's default)")
    parser.add_argument("--check", action="store_true", help="do not download: only check the files are there")
    parser.add_argument("--list", action="store_true", help="print the queries and exit")
    args = parser.parse_args(argv)
    if args.templateflow_home is not None:
        args.templateflow_home.mkdir(parents=True, exist_ok=True)
        os.environ["TEMPLATEFLOW_HOME"] = str(args.templateflow_home.resolve())  # before templateflow is imported

    from bids_recon.rois.templates import missing_templates, required_templates

    queries = required_templates()
    if args.list:
        for item in queries:
            print(f"{item.describe()}    # {item.purpose}")
        return 0
    if not args.check:
        from templateflow import api

        for item in queries:
            path = api.get(item.template, **item.query)
            print(f"fetched {path}")
    problems = missing_templates(queries)
    for item, reason in problems:
        print(f"MISSING {item.describe()}: {reason}", file=sys.stderr)
    if not problems:
        print(f"all {len(queries)} TemplateFlow files present in {os.environ.get('TEMPLATEFLOW_HOME', '(default)')}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
