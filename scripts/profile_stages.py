#!/usr/bin/env python
"""Measure the time and peak memory of every node of a bids_recon participant run.

Runs the same workflow as ``bids_recon ... participant`` (same arguments), with nipype's resource monitor on,
and writes one row per node (``node``, ``stage``, ``duration_s``, ``mem_peak_gb``) to ``--out`` plus a per-stage
summary on stdout. The numbers feed the per-stage resource table of docs/hpc.md and the SLURM plugin example.

Example::

    python scripts/profile_stages.py --out stages.tsv -- DS OUT participant -d fmriprep=DS/derivatives/fmriprep \\
        -w WORK --nprocs 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import uuid
from pathlib import Path

#: node-name patterns -> stage name (one stage per interface of the participant workflow)
STAGES = [
    (r"^betas_", "betas (one GLM per run)"),
    (r"^subject_mask$", "brain mask"),
    (r"^combine_runs$", "combine runs"),
    (r"^rois$", "ROIs"),
    (r"^image_features$", "stimulus features"),
    (r"^decode$", "decoder"),
    (r"^reconstruct$", "reconstruction"),
    (r"^evaluate$", "evaluation"),
    (r"^report$", "report"),
    (r"^ds_", "writing outputs"),
]


def stage_of(node: str) -> str:
    """The stage a node belongs to (``other`` when no pattern matches)."""
    for pattern, stage in STAGES:
        if re.search(pattern, node):
            return stage
    return "other"


def main(argv: list[str] | None = None) -> int:
    """Run the participant workflow with the resource monitor and write the node table."""
    outer = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    outer.add_argument("--out", type=Path, required=True, help="TSV of node, stage, duration_s, mem_peak_gb")
    outer.add_argument("bids_recon_args", nargs=argparse.REMAINDER, help="-- then the bids_recon arguments")
    ns = outer.parse_args(argv)
    args_list = [a for a in ns.bids_recon_args if a != "--"]

    from nipype import config as nipype_config
    from nipype import logging as nipype_logging
    from nipype.utils.profiler import log_nodes_cb

    from bids_recon.bids.layout import collect_inputs
    from bids_recon.cli.parser import build_parser
    from bids_recon.cli.run import _set_threads, build_config, check_paths
    from bids_recon.workflows.base import init_bids_recon_wf, nipype_plugin

    parser = build_parser()
    args = parser.parse_args(args_list)
    config = build_config(args, parser)
    check_paths(config)
    ex = config.execution
    ex.run_id = f"profile_{uuid.uuid4().hex[:8]}"
    _set_threads(config.nipype.omp_nthreads)
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    inputs = collect_inputs(Path(ex.bids_dir), Path(ex.derivatives["fmriprep"]), ex.participant_label,
                            ex.session_label, ex.task_id, ex.bids_filters, config.workflow.space,
                            config.workflow.resolution)
    workflow = init_bids_recon_wf(config, inputs)
    nipype_config.enable_resource_monitor()
    nipype_config.set("monitoring", "sample_frequency", "0.2")
    callback_log = ns.out.with_suffix(".callback.log")
    handler = logging.FileHandler(callback_log, mode="w")
    callback_logger = logging.getLogger("callback")
    callback_logger.setLevel(logging.DEBUG)
    callback_logger.addHandler(handler)
    plugin, plugin_args = nipype_plugin(config)
    plugin_args["status_callback"] = log_nodes_cb
    nipype_logging.update_logging(nipype_config)
    workflow.run(plugin=plugin, plugin_args=plugin_args)
    handler.flush()

    rows = [json.loads(line) for line in callback_log.read_text().splitlines() if line.startswith("{")]
    lines = ["node\tstage\tduration_s\tmem_peak_gb"]
    per_stage: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        mem = row.get("runtime_memory_gb")
        mem = float(mem) if isinstance(mem, int | float) else float("nan")
        duration = float(row.get("duration") or 0.0)
        stage = stage_of(row["name"])
        per_stage.setdefault(stage, []).append((duration, mem))
        lines.append(f"{row['id']}\t{stage}\t{duration:.2f}\t{mem:.3f}")
    ns.out.write_text("\n".join(lines) + "\n")
    print(f"{'stage':32s} {'nodes':>5s} {'max s':>7s} {'sum s':>7s} {'max GB':>7s}")
    for stage, values in sorted(per_stage.items()):
        durations, mems = zip(*values, strict=True)
        print(f"{stage:32s} {len(values):5d} {max(durations):7.2f} {sum(durations):7.2f} {max(mems):7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
