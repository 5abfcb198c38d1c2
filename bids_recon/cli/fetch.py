"""``bids_recon-fetch``: download everything a configuration needs into one folder, for offline runs.

Run it on a machine with internet (an HPC login node, a laptop), then copy or mount the folder where bids_recon
runs and source the environment file it writes::

    bids_recon-fetch /shared/bids_recon-cache --dry-run     # list files and sizes, download nothing
    bids_recon-fetch /shared/bids_recon-cache               # download, verify, write the environment file
    source /shared/bids_recon-cache/bids_recon-env.sh       # on the compute node, then run bids_recon

This module reads the command line (and ``--config``) into settings and calls :func:`bids_recon.offline.fetch`,
which says what is fetched and how the folder is laid out; downloading and verifying is :mod:`bids_recon.download`.
A generator's flags here (``--model``) are declared by its card
(:meth:`bids_recon.generate.card.GeneratorCard.add_fetch_options`).

Exit codes: 0 done; 1 a server refused a file (an HTTP error, e.g. a gated model without a login); 64 bad
arguments; 65 a download failed verification (the file was deleted); 66 a local input is missing (the
``--config`` file, TemplateFlow's skeleton); 69 the network cannot be reached (nothing was downloaded; run it
where there is internet, or use ``--dry-run`` to see what it would fetch) or a download was interrupted (run
the command again: it resumes).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bids_recon.errors import BidsReconError, ExitCode
from bids_recon.generate.card import GeneratorCard, generator_cards
from bids_recon.offline import ENV_FILE, default_groups, fetch, fetch_groups, parse_groups


def _fetch_flags(card: GeneratorCard) -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
    """A card's fetch flags: settings field -> (flags, argparse keywords)."""
    found: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}
    card.add_fetch_options(lambda *flags, key, **kwargs: found.__setitem__(key, (flags, kwargs)))
    return found


def _dest(card: GeneratorCard, key: str) -> str:
    return f"generate.{card.name}.{key}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bids_recon-fetch``."""
    parser = argparse.ArgumentParser(
        prog="bids_recon-fetch",
        description="Download the generators' models, the evaluation networks and the TemplateFlow files that a "
                    "bids_recon configuration needs into one folder, laid out as the caches expect, for offline "
                    "runs. Verifies checksums, resumes partial downloads, writes an environment file.",
        epilog="Exit codes: 0 done, 1 a server refused a file, 64 bad arguments, 65 a file failed verification "
               "(deleted), 66 a local input is missing, 69 no network or an interrupted download (run it again to "
               "resume; --dry-run works offline).")
    parser.add_argument("folder", type=Path, help="the folder to fill (created if needed)")
    parser.add_argument("--include", default=",".join(default_groups()),
                        help=f"comma list of what to fetch, from {', '.join(fetch_groups())} (default: %(default)s); "
                             "nsd-stimuli is ~37 GB; NSD files are under the NSD terms of use")
    for card in generator_cards().values():  # a generator's flags, declared by its card
        for key, (flags, kwargs) in _fetch_flags(card).items():
            parser.add_argument(*flags, dest=_dest(card, key), default=None, **{"metavar": key.upper(), **kwargs})
    parser.add_argument("--metrics", default=None,
                        help="comma list of metrics whose networks to fetch (bids_recon.evaluate.standard.METRICS "
                             "ids; default: the configuration's [workflow.evaluate] metrics, else all)")
    parser.add_argument("--config", type=Path, default=None,
                        help="a bids_recon configuration (TOML) to read the generator, ROI and metrics settings from")
    parser.add_argument("--dry-run", action="store_true", help="list files and sizes; download nothing")
    parser.add_argument("--env-file", type=Path, default=None,
                        help=f"where to write the environment file (default: FOLDER/{ENV_FILE})")
    parser.add_argument("--mount-point", default=None,
                        help="path at which the folder will be seen where bids_recon runs (e.g. /cache in a "
                             "container); the environment file uses it instead of FOLDER")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a server (default 30)")
    return parser


def generator_settings(args: argparse.Namespace, config: Any, out: Callable[[str], None] = print) -> dict[str, Any]:
    """The settings of each generator whose downloads are fetched: the configuration's (or the defaults), with
    the generator's fetch flags typed here; none for a generator the configuration does not use, unless one of
    its flags was typed."""
    chosen = {}
    for name, card in generator_cards().items():
        if not card.fetch_group:
            continue
        flags = _fetch_flags(card)
        typed = {key: getattr(args, _dest(card, key)) for key in flags
                 if getattr(args, _dest(card, key), None) is not None}
        if config is not None and config.workflow.generate.generator != name and not typed:
            give = ", ".join(names[0] for names, _ in flags.values())
            out(f"the configuration does not use the {name} generator: its downloads are not fetched"
                + (f" (give {give})" if give else ""))
            continue
        params = config.workflow.generate.sections[name] if config is not None else card.params()
        chosen[name] = dataclasses.replace(params, **typed)
    return chosen


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    """Carry out a parsed command; raise :class:`BidsReconError` subclasses for the documented exits."""
    groups = parse_groups(args.include)
    config = None
    if args.config is not None:
        from bids_recon.config import Config

        config = Config.load(args.config)  # MissingInputError (66) when absent
    metrics = args.metrics or (config.workflow.evaluate.metrics if config is not None else None) or "all"
    fetch(args.folder, groups, metrics, config.workflow.rois if config is not None else None,
          generator_settings(args, config, out), dry_run=args.dry_run, timeout=args.timeout,
          env_file=args.env_file, mount_point=args.mount_point, out=out)
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


__all__ = ["build_parser", "generator_settings", "main", "run"]
