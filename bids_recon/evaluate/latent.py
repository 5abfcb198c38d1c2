"""Latent similarity of decoded and true latent vectors, as Dado et al. (2022, "HYPER") report it.

For each test stimulus ``i`` with decoded latent ``d_i`` and true latent ``t_i`` (the one its image was generated
from), both ``(n_dims,)``:

- ``latent_corr``: Pearson r between ``d_i`` and ``t_i`` (over the dimensions);
- ``latent_similarity``: ``1 / (1 + MSE(d_i, t_i))``, MSE the mean over dimensions of the squared difference
  (1 for a perfect decoding, towards 0 as the error grows).

Each is averaged over the test stimuli; its chance level is the same mean over mismatched pairs (each decoded
latent against the next stimulus's true latent), as for the other similarity metrics of the table. The rows join
the table of :func:`bids_recon.evaluate.evaluate_generated` (:func:`add_latent_metrics`): same columns, one row
per (metric, variant), the per-stimulus values as columns of ``per_item`` and the definitions in the provenance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError
from bids_recon.evaluate.metrics import paired_correlation
from bids_recon.evaluate.standard import MetricSpec, MetricsResult

_SOURCE = "Dado et al. 2022 (HYPER), latent similarity; bids_recon/evaluate/latent.py"

#: The latent metrics, by id.
LATENT_METRICS: dict[str, MetricSpec] = {m.id: m for m in (
    MetricSpec("latent_corr", "Latent correlation", "similarity", "higher", None, None,
               "Pearson r between the decoded and the true latent of each test stimulus (over dimensions), mean over "
               "test stimuli; chance = the mean over mismatched pairs", _SOURCE),
    MetricSpec("latent_similarity", "Latent similarity 1/(1+MSE)", "similarity", "higher", None, None,
               "1 / (1 + mean squared difference) between the decoded and the true latent of each test stimulus, "
               "mean over test stimuli; chance = the mean over mismatched pairs", _SOURCE),
)}


def _pairs(decoded: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    mse = ((decoded - true) ** 2).mean(axis=1)
    return {"latent_corr": paired_correlation(decoded, true), "latent_similarity": 1.0 / (1.0 + mse)}


def latent_similarity(decoded: np.ndarray, true: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-stimulus latent correlation and 1/(1+MSE), and their chance levels.

    Parameters
    ----------
    decoded, true : ndarray, shape (n_stimuli, n_dims)
        Decoded and true latents, row ``i`` for test stimulus ``i``.

    Returns
    -------
    per_item : dict
        ``latent_corr``, ``latent_similarity`` -> ``(n_stimuli,)``.
    chance : dict
        The same metrics -> their mean over mismatched pairs (decoded ``i`` against true ``i - 1``).

    Raises
    ------
    BadDataError
        Shapes differ, fewer than 2 stimuli, or values that are not finite.
    """
    decoded = np.asarray(decoded, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if decoded.ndim != 2 or decoded.shape != true.shape:
        raise BadDataError(f"decoded and true latents must be two (n, d) arrays of one shape, got {decoded.shape} "
                           f"and {true.shape}")
    if len(decoded) < 2:
        raise BadDataError(f"latent similarity needs at least 2 test stimuli, got {len(decoded)}")
    if not (np.isfinite(decoded).all() and np.isfinite(true).all()):
        raise BadDataError("decoded or true latents are not finite")
    per_item = _pairs(decoded, true)
    chance = {name: float(values.mean()) for name, values in _pairs(decoded, np.roll(true, 1, axis=0)).items()}
    return per_item, chance


def add_latent_metrics(result: MetricsResult, decoded: np.ndarray, true: np.ndarray, method: str) -> MetricsResult:
    """``result`` (from :func:`~bids_recon.evaluate.evaluate_generated`) with the latent metrics of ``method``.

    Rows are appended in the table's columns, the per-stimulus values added to ``method``'s rows of ``per_item``
    (items in the decoders' order), the definitions to ``provenance["Metrics"]``.
    """
    per_item, chance = latent_similarity(decoded, true)
    rows = [{"metric": metric, "label": spec.label, "method": method, "value": float(per_item[metric].mean()),
             "chance": chance[metric], "sd": np.nan, "samples": 1, "selection": "single", "direction": spec.direction,
             "kind": spec.kind, "status": "ok", "note": "", "n": len(decoded), "network": "", "node": "",
             "input_size": np.nan, "source": spec.source} for metric, spec in LATENT_METRICS.items()]
    table = pd.concat([result.table, pd.DataFrame(rows)], ignore_index=True)[list(result.table.columns)]
    items = result.per_item.copy()
    mine = (items["variant"] == method) if "variant" in items else np.ones(len(items), bool)
    if int(np.sum(mine)) != len(decoded):
        raise BadDataError(f"per-item table has {int(np.sum(mine))} rows of '{method}' but {len(decoded)} latents")
    for metric, values in per_item.items():
        items.loc[mine, metric] = values
    provenance = dict(result.provenance)
    provenance["Metrics"] = {**provenance.get("Metrics", {}), **{
        m: {"Label": s.label, "Definition": s.definition, "Direction": s.direction, "Network": None, "Node": None,
            "Source": s.source} for m, s in LATENT_METRICS.items()}}
    return MetricsResult(table, items, provenance)


__all__ = ["LATENT_METRICS", "add_latent_metrics", "latent_similarity"]
