"""Every participant's metrics tables in a derivatives dataset, gathered into one group table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bids_recon.errors import EmptySelectionError, MissingInputError
from bids_recon.io import read_tsv
from bids_recon.naming import find_outputs, sidecar_path


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
        betas_only = any(True for _ in find_outputs(output_dir, "trials"))
        raise EmptySelectionError(
            "no participant metrics found (sub-*/recon/*_metrics.tsv): "
            + ("the participant level ran with --betas-only (betas, no reconstructions): the group level compares "
               "reconstructions; run the participant level without --betas-only" if betas_only else
               "run the participant level first"), output_dir)
    return pd.concat(frames, ignore_index=True)


def published_comparison(output_dir: Path, participants: list[str] | None = None) -> dict:
    """Whether every participant's run is comparable with the published rows (their metrics sidecars say)."""
    wanted = {p.removeprefix("sub-") for p in participants or []}
    found = []
    for path, entities in find_outputs(Path(output_dir), "metrics"):
        if wanted and entities.get("sub") not in wanted:
            continue
        sidecar = sidecar_path(path)
        found.append(json.loads(sidecar.read_text()).get("PublishedComparison", {}) if sidecar.is_file() else {})
    reasons = [c.get("Reason") or "different data: not recorded" for c in found if not c.get("Comparable")]
    return {"Comparable": bool(found) and not reasons, "Reason": reasons[0] if reasons else ""}


__all__ = ["collect_group_metrics", "published_comparison"]
