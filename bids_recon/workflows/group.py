"""Group level: gather every participant's metrics in output_dir into one table and one report."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from bids_recon.bids.derivatives import find_outputs
from bids_recon.config import Config
from bids_recon.errors import EmptySelectionError, MissingInputError
from bids_recon.io import read_tsv, write_tsv

LOGGER = logging.getLogger("bids_recon.group")


def collect_group_metrics(output_dir: Path, participants: list[str] | None = None) -> pd.DataFrame:
    """Every participant's metrics tables in ``output_dir``, with a ``participant_id`` column.

    Returns
    -------
    pandas.DataFrame
        ``participant_id, task`` and the columns of the metrics tables (``metric, label, method, value, chance,
        sd, samples, selection, direction, kind, status, note, n, ...``).
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise MissingInputError("output folder does not exist: run the participant level first", output_dir)
    wanted = {p.removeprefix("sub-") for p in participants or []}
    frames = []
    for path, entities in find_outputs(output_dir, "metrics"):
        if wanted and entities.get("sub") not in wanted:
            continue
        table = read_tsv(path)
        table.insert(0, "participant_id", f"sub-{entities['sub']}")
        table.insert(1, "task", entities.get("task", "n/a"))
        frames.append(table)
    if not frames:
        raise EmptySelectionError("no participant metrics found (sub-*/recon/*_metrics.tsv): run the participant "
                                  "level first", output_dir)
    return pd.concat(frames, ignore_index=True)


def published_comparison(output_dir: Path, participants: list[str] | None = None) -> dict:
    """Whether every participant's run is comparable with the published rows (their metrics sidecars say)."""
    import json

    from bids_recon.bids.derivatives import sidecar_path

    wanted = {p.removeprefix("sub-") for p in participants or []}
    found = []
    for path, entities in find_outputs(Path(output_dir), "metrics"):
        if wanted and entities.get("sub") not in wanted:
            continue
        sidecar = sidecar_path(path)
        found.append(json.loads(sidecar.read_text()).get("PublishedComparison", {}) if sidecar.is_file() else {})
    reasons = [c.get("Reason") or "different data: not recorded" for c in found if not c.get("Comparable")]
    return {"Comparable": bool(found) and not reasons, "Reason": reasons[0] if reasons else ""}


def run_group(config: Config) -> Path:
    """Write the group metrics table(s) and ``group.html``; return the report's path."""
    from bids_recon.bids.derivatives import group_metrics_path, group_report_path
    from bids_recon.reports.group import build_group_report

    output_dir = Path(config.execution.output_dir)
    table = collect_group_metrics(output_dir, config.execution.participant_label)
    for task, rows in table.groupby("task"):
        write_tsv(output_dir / group_metrics_path(str(task)), rows.reset_index(drop=True))
    report = build_group_report(output_dir, table, output_dir / group_report_path(),
                                published_comparison(output_dir, config.execution.participant_label))
    LOGGER.info("Group: %d participants; report %s", table["participant_id"].nunique(), report)
    return report
