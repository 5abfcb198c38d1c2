"""Evaluation of what a generator made: every variant and sample, with the field's metrics and bids_recon's own.

:func:`evaluate_generated` is the one call an evaluation node makes, whatever the generator: the reconstructions
of each *variant* (a generator's kinds of output: ``linear``; the diffusion generator's ``z``, ``c``, ``zc``) as
one or more *samples* (image sets, one per seed), the seen images, and optionally the decoded features. It
returns one table row per (metric, variant):

- the field's metrics (:data:`bids_recon.evaluate.standard.METRICS`, selected by ``EvaluationParams.metrics``),
  computed by one :class:`~bids_recon.evaluate.standard.StandardEvaluator` (networks loaded once, the seen
  images' features computed once);
- bids_recon's own diagnostics (:data:`DIAGNOSTICS`): 2-way identification in pixel space and, when decoded
  features are given, in the decoded feature space, and the feature correlation.

With several samples, a row reports what ``EvaluationParams.selection`` says: ``mean`` (each metric averaged over
the samples, with their standard deviation) or a best-of-n rule (per image, the sample picked by CLIP similarity
to the brain-decoded embedding, ``brain_clip``, or to the seen image, ``oracle_clip``). Every sample's values are
kept: per image in ``per_item`` (with ``selected`` marking the picks), per sample in the provenance
(``PerSample``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError
from bids_recon.evaluate.metrics import identification_metrics, resize_images
from bids_recon.evaluate.params import EvaluationParams
from bids_recon.evaluate.standard import (
    SELECTION_TEXT,
    MetricSpec,
    MetricsResult,
    StandardEvaluator,
    not_computed_lines,
)

_OWN = "bids_recon (bids_recon/evaluate/metrics.py identification_metrics)"

#: bids_recon's own metrics, always computed (they need no network).
DIAGNOSTICS: dict[str, MetricSpec] = {m.id: m for m in (
    MetricSpec("identification_pixels", "2-way identification (pixels)", "identification", "higher", None, None,
               "2-way identification (all pairs) of the flattened RGB reconstructions against the seen images at "
               "the reconstructions' size", _OWN),
    MetricSpec("identification_features", "2-way identification (decoded features)", "identification", "higher",
               None, None, "2-way identification (all pairs) of the decoded against the true decoding targets of "
               "the test stimuli", _OWN),
    MetricSpec("feature_corr", "Feature correlation", "similarity", "higher", None, None,
               "Pearson r of decoded and true decoding targets, mean over test stimuli; chance = the mean over "
               "mismatched pairs", _OWN),
)}

#: Columns of the metrics table, in order.
TABLE_COLUMNS = ("metric", "label", "method", "value", "chance", "sd", "samples", "selection", "direction", "kind",
                 "status", "note", "n", "network", "node", "input_size", "source")


def standardise_features(decoded: np.ndarray, true: np.ndarray, stim_ids: np.ndarray, features: np.ndarray,
                         train_ids: set[str] | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded and true test features z-scored per dimension with the training stimuli's mean and sd.

    Constant dimensions are dropped. Correlating raw z or c vectors mostly measures the part every stimulus
    shares (over 99% of a random model's and much of a real model's variance), not the stimulus.

    Parameters
    ----------
    decoded, true : ndarray, shape (n_test, n_features)
        Decoded and true features of the test stimuli.
    stim_ids : ndarray of str, shape (n_stimuli,)
    features : ndarray, shape (n_stimuli, n_features)
        Every stimulus's features (the training ones give the statistics).
    train_ids : collection of str
        The training stimuli.

    Returns
    -------
    decoded, true : ndarray, shape (n_test, n_kept)
    """
    train = set(str(s) for s in train_ids)
    rows = features[np.array([str(s) in train for s in stim_ids])]
    mean, sd = rows.mean(axis=0), rows.std(axis=0)
    keep = sd > 1e-6 * max(float(sd.max(initial=0.0)), 1e-30)
    return (decoded[:, keep] - mean[keep]) / sd[keep], (true[:, keep] - mean[keep]) / sd[keep]


class LazySamples(Sequence):
    """The samples of one variant, each an ``(n_items, H, W, 3)`` array read from image files when indexed.

    Parameters
    ----------
    files : list of list of str
        ``files[k][i]``: the image of item ``i`` in sample ``k``.
    load_image : callable
        ``file -> (H, W, 3)`` image (uint8, or float in [0, 1]).
    """

    def __init__(self, files: list[list[str]], load_image: Callable[[str], np.ndarray]) -> None:
        self.files = files
        self.load_image = load_image

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, k: int) -> np.ndarray:  # type: ignore[override]
        if not -len(self.files) <= k < len(self.files):
            raise IndexError(k)
        return np.stack([self.load_image(f) for f in self.files[k]])


def samples_from_index(index: pd.DataFrame, stimulus_order: Sequence[str],
                       load_image: Callable[[str], np.ndarray]) -> dict[str, LazySamples]:
    """Each variant's samples from an index of image files, the items in ``stimulus_order``.

    Parameters
    ----------
    index : pandas.DataFrame
        One row per image: ``stimulus``, ``variant``, ``sample``, ``file``.
    stimulus_order : sequence of str
        The test stimuli in the decoders' row order; every (variant, sample) must have exactly these.
    load_image : callable
        ``file -> (H, W, 3)`` image.

    Raises
    ------
    BadDataError
        A (variant, sample) lacks some stimuli, or has others.
    """
    order = [str(s) for s in stimulus_order]
    out: dict[str, LazySamples] = {}
    for variant, rows in index.groupby("variant", sort=False):
        files = []
        for sample, sample_rows in rows.groupby("sample", sort=True):
            by_stimulus = dict(zip(sample_rows["stimulus"].astype(str), sample_rows["file"].astype(str), strict=True))
            if sorted(by_stimulus) != sorted(order) or len(sample_rows) != len(order):
                missing = sorted(set(order) - set(by_stimulus))[:3]
                raise BadDataError(f"variant {variant}, sample {sample}: {len(sample_rows)} images, expected one for "
                                   f"each of the {len(order)} test stimuli" + (f" (missing {missing})" if missing
                                                                                 else ""))
            files.append([by_stimulus[s] for s in order])
        out[str(variant)] = LazySamples(files, load_image)
    return out


class _Truths:
    """The seen images at a given size, from an array or a loader, each size made once."""

    def __init__(self, truths: np.ndarray | Callable[[int], np.ndarray]) -> None:
        self.source = truths
        self.cache: dict[int, np.ndarray] = {}

    def at(self, size: int) -> np.ndarray:
        if size not in self.cache:
            if callable(self.source):
                images = np.asarray(self.source(size))
            else:
                images = np.asarray(self.source)
                if images.shape[1:3] != (size, size):
                    images = resize_images(images, size)
            if images.ndim != 4 or images.shape[1:] != (size, size, 3):
                raise BadDataError(f"truths: expected seen images of shape (n, {size}, {size}, 3), got "
                                   f"{images.shape}")
            self.cache[size] = images
        return self.cache[size]

    def for_field(self, size: int) -> np.ndarray:
        """For the field's metrics: an array as given (the evaluator resizes it to 256 px, as the reference code
        resizes the 425 px NSD images), a loader's images at ``size``."""
        if callable(self.source):
            return self.at(size)
        images = np.asarray(self.source)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise BadDataError(f"truths: expected seen images of shape (n, H, W, 3), got {images.shape}")
        return images


def _json_values(values: Sequence[float]) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


@dataclass
class _VariantScores:
    """The field's metrics of one variant: its rows, each sample's rows and per-item values, the best-of-n picks."""

    headline: pd.DataFrame
    sample_tables: list[pd.DataFrame]
    sample_items: list[pd.DataFrame]
    selection: str
    picks: np.ndarray | None = None
    pick_note: str = ""


def _field_metrics(evaluator: StandardEvaluator, sets: Sequence[Any], truth: np.ndarray, rule: str,
                   decoded_clip: np.ndarray | None) -> _VariantScores:
    if len(sets) == 1:
        result = evaluator.evaluate(sets[0], truth, decoded_clip=decoded_clip)
        return _VariantScores(result.table.assign(sd=np.nan), [result.table], [result.per_item], "single")
    table, per_item, _ = evaluator.evaluate_samples(sets, truth, selection=(rule,), decoded_clip=decoded_clip)
    selection = "mean" if rule == "mean" else f"best_{rule}"
    headline = table[table["aggregate"] == selection].drop(columns=["aggregate", "sample"])
    if "sd" not in headline:
        headline = headline.assign(sd=np.nan)
    samples = range(len(sets))
    scores = _VariantScores(
        headline, [table[(table["aggregate"] == "sample") & (table["sample"] == k)] for k in samples],
        [per_item[(per_item["aggregate"] == "sample") & (per_item["sample"] == k)]
         .drop(columns=["aggregate", "sample", "selected_sample"], errors="ignore") for k in samples], selection)
    if rule != "mean":
        best = per_item[per_item["aggregate"] == selection]
        if len(best):
            scores.picks = best["selected_sample"].to_numpy(dtype=int)
        else:  # the rule could not pick (no CLIP, no CLIP-space decoder): its rows say why
            scores.pick_note = str(headline["note"].iloc[0]) if len(headline) else f"{rule} selection not possible"
    return scores


def _diagnostic_rows(own: list[tuple[dict, dict, int]], scores: _VariantScores, rule: str) -> list[dict[str, Any]]:
    """bids_recon's own metrics of one variant as table rows, under the same selection as the field's."""
    n_samples, rows = len(own), []
    for metric, spec in DIAGNOSTICS.items():
        if metric not in own[0][0]:
            continue
        values = np.stack([per_item[metric] for per_item, _, _ in own])  # (n_samples, n_items)
        row = {"metric": metric, "label": spec.label, "value": np.nan, "sd": np.nan,
               "chance": float(np.mean([chance[metric][0] for _, chance, _ in own])), "direction": spec.direction,
               "kind": own[0][1][metric][1], "status": "ok", "note": "", "n": values.shape[1], "network": "",
               "node": "", "input_size": own[0][2] if metric == "identification_pixels" else np.nan,
               "source": spec.source}
        if n_samples == 1:
            row["value"] = float(values[0].mean())
        elif scores.selection == "mean":
            set_values = values.mean(axis=1)
            row.update(value=float(set_values.mean()), sd=float(set_values.std(ddof=1)),
                       note=f"mean of {n_samples} samples")
        elif scores.picks is None:
            row.update(status="not computed", note=scores.pick_note)
        else:
            row.update(value=float(values[scores.picks, np.arange(values.shape[1])].mean()),
                       note=f"best of {n_samples} by {rule}")
        rows.append(row)
    return rows


def evaluate_generated(
    samples: Mapping[str, Sequence[Any]],
    truths: np.ndarray | Callable[[int], np.ndarray],
    params: EvaluationParams | None = None,
    *,
    stim_ids: Sequence[str] | None = None,
    features: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    decoded_clip: Mapping[str, np.ndarray] | None = None,
    device: str = "cpu",
    allow_download: bool = False,
    hash_cache: Path | None = None,
    log_skips: bool = True,
    evaluator: StandardEvaluator | None = None,
) -> MetricsResult:
    """Every metric of every variant a generator made: the one evaluation call of any generator's node.

    Parameters
    ----------
    samples : mapping
        Variant -> its samples: a sequence (a list, or :class:`LazySamples`) of ``(n_items, H, W, 3)`` arrays
        (uint8, or float in [0, 1]), item ``i`` of every sample being test stimulus ``i``. One sample for a
        deterministic generator (``{"linear": [images]}``).
    truths : ndarray, shape (n_items, H, W, 3), or callable
        The seen images, or ``size -> (n_items, size, size, 3)`` images (e.g. ``lambda size:
        resolver.load_images(ids, size)``). The field's metrics read them at ``params.image_size`` (then resize
        to 256 px, as the reference code does; an array is used as given); pixel identification at the
        reconstructions' size.
    params : EvaluationParams, optional
        ``metrics``, ``batch_size``, ``selection`` (the best-of-n rule of multi-sample variants), ``image_size``.
    stim_ids : sequence of str, optional
        The test stimuli, for the ``stimulus`` column of ``per_item``.
    features : mapping, optional
        Variant -> ``(decoded, true)`` features ``(n_items, n_features)`` for the decoded-feature metrics.
    decoded_clip : mapping, optional
        Variant -> brain-decoded CLIP ViT-L/14 image embeddings ``(n_items, 768)``, for retrieval and the
        ``brain_clip`` rule.
    device : str
        ``cpu`` or ``cuda``.
    allow_download : bool
        Let the evaluator download missing network weights (otherwise those metrics are not computed).
    hash_cache : Path, optional
        JSON file remembering weight-file digests between runs.
    log_skips : bool
        Log one line per network that cannot be loaded (a workflow that said it before any work passes False).
    evaluator : StandardEvaluator, optional
        An evaluator to reuse (its metric selection wins over ``params.metrics``).

    Returns
    -------
    MetricsResult
        ``table``: one row per (metric, variant), columns :data:`TABLE_COLUMNS` (``method`` is the variant;
        ``selection`` is ``single``, ``mean`` or ``best_<rule>``; ``status`` ``ok`` or ``not computed`` with the
        reason in ``note``). ``per_item``: one row per (stimulus, variant, sample) with each metric's value
        (``selected``: whether the best-of-n rule picked this sample). ``provenance``: definitions,
        preprocessing, networks (file, sha256, source), selection rule, samples, per-sample values and the
        ``not computed`` lines, for the metrics sidecar.
    """
    params = params or EvaluationParams()
    if not samples:
        raise BadDataError("evaluate_generated: no reconstructions given (samples is empty)")
    evaluator = evaluator or StandardEvaluator(
        params.metrics, device=device, allow_download=allow_download, batch_size=params.batch_size,
        hash_cache=hash_cache, pixel_size=params.image_size, log_skips=log_skips)
    seen = _Truths(truths)
    truth_field = seen.for_field(params.image_size)
    rule = params.selection
    tables, items, per_sample, counts = [], [], {}, {}
    for variant, sets in samples.items():
        n_samples = len(sets)
        if n_samples == 0:
            raise BadDataError(f"variant {variant}: no samples")
        counts[str(variant)] = n_samples
        decoded, true = (features or {}).get(variant, (None, None))
        clip = (decoded_clip or {}).get(variant)
        own = []  # bids_recon's own metrics of each sample: (per item, chance and kind, image size)
        for k in range(n_samples):
            images = np.asarray(sets[k])
            if len(images) != len(truth_field):
                raise BadDataError(f"variant {variant}, sample {k}: {len(images)} images but {len(truth_field)} "
                                   "seen images")
            if images.dtype == np.uint8:
                images = images.astype(np.float32) / 255.0
            own.append(identification_metrics(images, seen.at(images.shape[1]), decoded, true) + (images.shape[1],))
        scores = _field_metrics(evaluator, sets, truth_field, rule, clip)
        headline = pd.concat([scores.headline, pd.DataFrame(_diagnostic_rows(own, scores, rule))], ignore_index=True)
        headline["method"], headline["samples"], headline["selection"] = str(variant), n_samples, scores.selection
        tables.append(headline)

        if n_samples > 1:
            per_sample[str(variant)] = {
                **{m: _json_values([float(t.set_index("metric").loc[m, "value"]) for t in scores.sample_tables])
                   for m in scores.sample_tables[0]["metric"]},
                **{m: _json_values([float(np.mean(per_item[m])) for per_item, _, _ in own]) for m in own[0][0]},
            }
        for k in range(n_samples):
            frame = scores.sample_items[k].reset_index(drop=True).drop(columns=["item"])
            for metric, values in own[k][0].items():
                frame[metric] = values
            frame.insert(0, "stimulus", list(stim_ids) if stim_ids is not None else np.arange(len(frame)))
            frame.insert(1, "variant", str(variant))
            frame.insert(2, "sample", k)
            if scores.picks is not None:
                frame["selected"] = scores.picks == k
            items.append(frame)

    table = pd.concat(tables, ignore_index=True)
    table = table[[c for c in TABLE_COLUMNS if c in table]]
    provenance = evaluator.provenance()
    provenance["Metrics"].update({m: {"Label": s.label, "Definition": s.definition, "Direction": s.direction,
                                      "Network": None, "Node": None, "Source": s.source}
                                  for m, s in DIAGNOSTICS.items() if m in set(table["metric"])})
    multi = any(n > 1 for n in counts.values())
    provenance["Selection"] = ({"Rule": rule, "Description": SELECTION_TEXT[rule]} if multi else
                               {"Rule": "single", "Description": "one sample per image: no selection"})
    provenance["Samples"] = counts
    if per_sample:
        provenance["PerSample"] = per_sample
    provenance["NotComputedLines"] = not_computed_lines(table)
    return MetricsResult(table.reset_index(drop=True), pd.concat(items, ignore_index=True), provenance)


__all__ = ["DIAGNOSTICS", "TABLE_COLUMNS", "LazySamples", "evaluate_generated", "samples_from_index",
           "standardise_features"]
