"""The metrics part of the reports: the published table's layout with the published rows beside a run's own.

Values are formatted as the papers print them: identification and retrieval in %, PixCorr, SSIM and the
distances with three decimals. A run's metric that was not computed says so in its cell (the reason is one line
of the section's text); a metric a paper did not report is a dash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bids_recon.evaluate.published import LAYOUT, PROTOCOLS, published_table, row_note
from bids_recon.evaluate.standard import METRICS
from bids_recon.evaluate.variants import DIAGNOSTICS

#: Shown for a metric the run selected but could not compute, and for one a paper did not report.
NOT_COMPUTED, NOT_REPORTED = "not computed", "–"
#: Who the published rows average over.
PUBLISHED_DATA = "NSD shared1000 (subjects 1, 2, 5, 7)"


def metric_label(metric: str) -> str:
    """The printed name of a metric id (the published column name for the field's metrics)."""
    spec = METRICS.get(metric) or DIAGNOSTICS.get(metric)
    return spec.label if spec is not None else metric


def format_value(metric: str, value: float, sd: float | None = None, n: int | None = None) -> str:
    """``83.0%`` for identification and retrieval, ``0.254`` otherwise; with ``± sd`` and ``(n=...)`` if given."""
    if value is None or not np.isfinite(value):
        return NOT_REPORTED
    spec = METRICS.get(metric) or DIAGNOSTICS.get(metric)
    percent = spec is not None and spec.kind in ("identification", "retrieval")
    scale, unit, digits = (100.0, "%", 1) if percent else (1.0, "", 3)
    text = f"{value * scale:.{digits}f}{unit}"
    if sd is not None and np.isfinite(sd):
        text += f" ± {sd * scale:.{digits}f}{unit}"
    if n is not None:
        text += f" (n={n})"
    return text


def _own_cell(rows: pd.DataFrame, metric: str, spread: bool) -> str:
    found = rows[rows["metric"] == metric]
    if found.empty:
        return NOT_REPORTED
    row = found.iloc[0]
    if str(row.get("status", "ok")) != "ok" or not np.isfinite(row["value"]):
        return NOT_COMPUTED
    if spread:
        return format_value(metric, float(row["value"]), float(row.get("sd", np.nan)), int(row["participants"]))
    return format_value(metric, float(row["value"]))


def _method_name(rows: pd.DataFrame, method: str) -> str:
    first = rows.iloc[0]
    samples, selection = int(first.get("samples", 1) or 1), str(first.get("selection", "single"))
    if samples <= 1 or selection in ("single", "nan"):
        return method
    how = "mean of" if selection == "mean" else f"{selection.removeprefix('best_')}, best of"
    return f"{method} ({how} {samples} samples)"


def published_layout(table: pd.DataFrame, comparison: Mapping[str, Any] | None = None,
                     spread: bool = False, ours: str = "this run", test_images: int | None = None) -> pd.DataFrame:
    """The published table's columns (:data:`~bids_recon.evaluate.published.LAYOUT`): the run's rows, then the
    published ones.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per (metric, method): ``metric, method, value`` and ``status`` (a metrics table); with ``spread``,
        group means with ``sd`` and ``participants`` columns.
    comparison : mapping, optional
        The metrics sidecar's ``PublishedComparison`` (``Comparable``, ``Reason``); without it, not comparable.
    spread : bool
        Print ``mean ± sd (n=participants)``.
    ours : str
        What the run's rows are (their ``Method`` prefix and ``Data``).
    test_images : int, optional
        The run's number of test images (default: the metrics table's ``n`` column when it has one).

    Returns
    -------
    pandas.DataFrame
        Columns ``Method``, one per metric label, ``Data``: strings, ready to print.
    """
    labels = [metric_label(m) for m in LAYOUT]
    comparable = bool((comparison or {}).get("Comparable", False))
    if test_images is None and "n" in table and not spread:
        counts = pd.to_numeric(table["n"], errors="coerce").dropna()
        test_images = int(counts.max()) if len(counts) else None
    records = []
    for method, rows in table.groupby("method", sort=False):
        records.append({"Method": f"{ours}: {_method_name(rows, str(method))}",
                        **{label: _own_cell(rows, m, spread) for label, m in zip(labels, LAYOUT, strict=True)},
                        "Data": ours})
    for row in published_table():
        records.append({"Method": row["method"],
                        **{label: format_value(m, row[m]) for label, m in zip(labels, LAYOUT, strict=True)},
                        "Data": row_note(row["protocol"], comparable, test_images)})
    return pd.DataFrame(records, columns=["Method", *labels, "Data"])


def comparison_text(comparison: Mapping[str, Any] | None) -> str:
    """One sentence on whether the published rows are comparable with this run."""
    if comparison and comparison.get("Comparable"):
        return ("This run is on NSD with the published test split (shared1000): the published rows are on the same "
                "data.")
    reason = (comparison or {}).get("Reason") or "different data: the run does not say it is on NSD shared1000"
    return (f"The published rows: {reason}. They show where the field stands on NSD, not a comparison with these "
            "numbers.")


def protocols_text() -> str:
    """The published tables' protocols, one sentence each (the reports print it under the table)."""
    return " ".join(f"{spec.label}: {spec.source}, {spec.description}, averaged over {PUBLISHED_DATA}."
                    for spec in PROTOCOLS.values())


def networks_text(provenance: Mapping[str, Any]) -> str:
    """A sentence naming the networks whose weights are not the published files (sha256 differs), or ''."""
    differ = [info.get("Network", name) for name, info in (provenance.get("Networks") or {}).items()
              if info.get("MatchesPublished") is False]
    if not differ:
        return ""
    return (f"The weights of {', '.join(differ)} are not the published files (their sha256 differs from "
            "torchvision's): numbers computed with them are not comparable with published ones.")


__all__ = ["NOT_COMPUTED", "NOT_REPORTED", "comparison_text", "format_value", "metric_label", "networks_text",
           "protocols_text", "published_layout"]
