"""A Boutiques descriptor of ``bids_recon``, generated from the argparse parser (never written by hand).

It is the interface descriptor of the BIDS-Apps execution specification (0.1.0, https://bids-standard.github.io/
execution-spec/): the argument IDs it names (``InputDataset``, ``OutputLocation``, ``AnalysisLevel``, ``Help``,
``ToolVersion``, ``<Entity>Label``), ``custom.BIDSAppSpecVersion``, and the suggested resources of
:data:`SUGGESTED_RESOURCES`. ``bids_recon --bids-exec-spec`` prints it; ``python -m bids_recon.cli.boutiques
boutiques/bids_recon.json`` rewrites the committed descriptor; a test regenerates it and fails when the two differ,
so the descriptor follows every change of :func:`bids_recon.cli.parser.build_parser`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bids_recon import __version__
from bids_recon.cli.parser import build_parser

#: The container image the Dockerfile builds (``docker build -t`` this name).
CONTAINER_IMAGE = f"bidsrecon/bids_recon:{__version__}"
SCHEMA_VERSION = "0.5"
#: The version of the BIDS-Apps execution specification the descriptor and the command line follow.
BIDS_APP_SPEC_VERSION = "0.1.0"


@dataclass(frozen=True)
class Resources:
    """What one measured run used: the numbers behind the descriptor's ``suggested-resources``.

    Attributes
    ----------
    what : str
        The run, and the command that measured it.
    cpu_cores : int
        Cores the run had (``--nprocs``).
    gpus : int
        GPUs it used.
    walltime_s : float
        Wall-clock time of the participant level, in seconds.
    peak_rss_gib : float
        Peak resident memory of the whole process tree, in GiB.
    work_gib, output_gib : float
        Peak size of the work folder and size of the outputs, in GiB.
    """

    what: str
    cpu_cores: int
    gpus: int
    walltime_s: float
    peak_rss_gib: float
    work_gib: float
    output_gib: float

    def boutiques(self) -> dict[str, Any]:
        """As Boutiques' ``suggested-resources`` (``ram`` and ``disk-space`` in GB of 10^9 bytes, rounded up to 0.1;
        the measured peaks, without headroom; GPUs are not a Boutiques key: see ``custom.SuggestedResources``)."""
        def gigabytes(gib: float) -> float:
            return math.ceil(gib * 2**30 / 1e8) / 10

        return {"cpu-cores": self.cpu_cores, "ram": gigabytes(self.peak_rss_gib),
                "disk-space": gigabytes(self.work_gib + self.output_gib), "walltime-estimate": self.walltime_s}


#: Measured resources, the ONE place to change them (each with the command that measured it). The descriptor's
#: ``suggested-resources`` are those of :data:`SUGGESTED_PROFILE`; all of them are in ``custom.SuggestedResources``.
SUGGESTED_RESOURCES: dict[str, Resources] = {
    # docs/benchmarks.md "NSD subj01 at full size", `python benchmarks/bench_nsd_full.py --root ROOT` (a clean clone at
    # d92498a, 2-core / 23 GiB VM, --nprocs 2, one BLAS thread; other jobs on the cores for its first hour: a quieter
    # run of c9ae9b0 took 5,682 s): the participant level of docs/recipes/takagi2023.md
    # (37 sessions, 27,750 trials, 982 test images) with toy-width SD-shaped models on CPU and 5 DDIM steps; the real
    # SD-1.4 at 50 steps and every metric need a GPU and hours more.
    "nsd_subj01_full": Resources(
        what="NSD subj01, 37 sessions, Takagi & Nishimoto recipe (docs/recipes/takagi2023.md), CPU, 5 DDIM steps: "
             "python benchmarks/bench_nsd_full.py --root ROOT",
        cpu_cores=2, gpus=0, walltime_s=6494, peak_rss_gib=15.55, work_gib=18.3, output_gib=4.5),
    # The README's demo on the same 2-core / 24 GB VM, default --nprocs (all CPUs) and --omp-nthreads 1 (no
    # *_NUM_THREADS set): `bids_recon-sim DS --preset small --overwrite`, then with TEMPLATEFLOW_HOME=DS_templateflow
    # `/usr/bin/time -v bids_recon DS OUT participant -d fmriprep=DS/derivatives/fmriprep -w WORK` (2 participants x 8
    # runs), the process tree's RSS summed every 0.2 s from /proc; `du -sb WORK OUT` after it. 2026-12-07, with the NSD
    # benchmark and another demo on the same cores (load 4-6: the run got 54% of a core, 40 s of CPU; about 23 s when
    # the machine is idle, README).
    "demo_small": Resources(
        what="the README's demo (bids_recon-sim --preset small: 2 participants x 8 runs), CPU, busy machine",
        cpu_cores=2, gpus=0, walltime_s=75, peak_rss_gib=3.6, work_gib=0.14, output_gib=0.05),
}
#: The profile whose numbers are the descriptor's ``suggested-resources``: one real-size participant.
SUGGESTED_PROFILE = "nsd_subj01_full"

#: Inputs not in the descriptor: the BIDS-Apps 1.0 positional form (the flags are the execution specification's) and
#: ``--bids-exec-spec`` itself.
_NOT_DESCRIBED = ("--bids-exec-spec",)
#: Argument IDs the execution specification names, where ours would differ (CamelCase of the first long flag).
_SPEC_IDS = {"--participant-label": "SubjectLabel", "--session-label": "SessionLabel", "--task-id": "TaskLabel",
             "--version": "ToolVersion", "--help": "Help"}
_REQUIRED = ("InputDataset", "OutputLocation", "AnalysisLevel")
_OUTPUT_PATHS = ("OutputLocation", "WorkDir")
#: Inputs that name files or folders read (Boutiques checks they exist).
_FILES = ("InputDataset", "BidsFilterFile", "ConfigFile", "UsePlugin")


def _input_id(action: argparse.Action) -> str:
    """The argument ID: the execution specification's where it names one (``SubjectLabel`` for
    ``--participant-label``), else the first long flag in CamelCase (``OmpNthreads`` for ``--omp-nthreads``)."""
    flag = command_line_flag(action)
    if flag in _SPEC_IDS:
        return _SPEC_IDS[flag]
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", flag) if part)


def command_line_flag(action: argparse.Action) -> str:
    """The flag the descriptor uses: the first long option (``--nprocs`` rather than its alias ``--nthreads``)."""
    return next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])


def _described(action: argparse.Action) -> bool:
    return bool(action.option_strings) and not set(action.option_strings) & set(_NOT_DESCRIBED)


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


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _describe(action: argparse.Action) -> str:
    text = (action.help or "").replace("%%", "%")
    if action.nargs is None and action.option_strings and type(action).__name__ in ("_ToDict", "_RoiMasks"):
        text += " (repeatable on the command line; one value in this descriptor)"
    if type(action).__name__ == "_Verbosity":
        text += " (the descriptor passes it once)"
    if isinstance(action, argparse._HelpAction):
        text = "show the help text and exit"
    if isinstance(action, argparse._VersionAction):
        text = "print the version and exit"
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
        JSON-serialisable descriptor: one input per option (``--help`` and ``--version`` included, as the
        execution specification requires; the positional BIDS-Apps 1.0 form and ``--bids-exec-spec`` left out).
    """
    parser = parser or build_parser()
    inputs: list[dict[str, Any]] = []
    keys: list[str] = []
    for action in parser._actions:
        if not _described(action):
            continue
        ident = _input_id(action)
        value_key = f"[{ident}]"
        keys.append(value_key)
        btype, extra = _value_type(action)
        item: dict[str, Any] = {"id": ident, "name": ident_name(ident), "type": btype,
                                "description": _describe(action), "value-key": value_key,
                                "optional": ident not in _REQUIRED, **extra}
        item["command-line-flag"] = command_line_flag(action)
        if action.nargs in ("+", "*"):
            item["list"] = True
            if action.nargs == "+":
                item["min-list-entries"] = 1
        choices = getattr(action, "setting_choices", None)
        if choices and action.nargs != 0:
            item["value-choices"] = list(choices)
        default = _default(action) if ident not in _REQUIRED else None
        if default is not None:  # in words only: bosh would type a "default-value", and a typed flag beats the
            item["description"] += f" (default: {_shown(default)})"  # --config-file
        inputs.append(item)
    suggested = SUGGESTED_RESOURCES[SUGGESTED_PROFILE]
    return {
        "name": "bids_recon",
        "tool-version": __version__,
        "description": parser.description,
        "author": "bids_recon developers",
        "url": "https://github.com/bids-recon/bids_recon",
        "descriptor-url": "https://github.com/bids-recon/bids_recon/blob/main/boutiques/bids_recon.json",
        "command-line": " ".join([parser.prog, *keys]),
        "schema-version": SCHEMA_VERSION,
        "container-image": {"type": "docker", "image": CONTAINER_IMAGE},
        "inputs": inputs,
        "output-files": [
            {"id": "OutputFolder", "name": "output folder", "path-template": "[OutputLocation]",
             "description": "the BIDS-derivatives dataset (betas, ROIs, decoders, reconstructions, reports)"},
        ],
        "suggested-resources": suggested.boutiques(),
        "tags": {"domain": ["neuroinformatics", "fmri", "bids-app", "image-reconstruction"]},
        "custom": {
            "BIDSAppSpecVersion": BIDS_APP_SPEC_VERSION,
            "OutputDataSpecification": ["BIDS-Derivatives"],
            "SuggestedResourcesProfile": SUGGESTED_PROFILE,
            "SuggestedResources": {name: {**asdict(r), "boutiques": r.boutiques()}
                                   for name, r in SUGGESTED_RESOURCES.items()},
        },
    }


def ident_name(ident: str) -> str:
    """A display name from a CamelCase ID (``InputDataset`` -> ``input dataset``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", ident).lower()


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
