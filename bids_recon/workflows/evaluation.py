"""Wiring every generator's evaluation shares: the node's inputs, the metrics sink, the methods sentence.

A generator's evaluation node is an interface on :class:`bids_recon.interfaces.stages.EvaluationInputSpec` that
calls :func:`bids_recon.evaluate.evaluate_generated` once; its part of the workflow gives it
:func:`evaluation_inputs`, writes its table with :func:`metrics_sink` + :func:`connect_metrics`, and describes it
with :func:`evaluation_methods`. Which metrics cannot be computed (weights not on disk) is said once, before any
work, by :func:`log_skipped_metrics`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bids_recon.evaluate.published import Comparability, comparability
from bids_recon.evaluate.standard import METRICS, missing_weights_lines, select_metrics

if TYPE_CHECKING:  # pragma: no cover
    from nipype.pipeline import engine as pe

    from bids_recon.bids.derivatives import SubjectOutputs
    from bids_recon.config import Config

LOGGER = logging.getLogger("bids_recon.evaluate")

#: File of the work directory remembering the evaluation networks' sha256 between runs.
HASH_CACHE = "evaluation_weights_sha256.json"
#: What the metrics sidecar says of every table.
_COLUMNS = ("the field's metrics (MindEye's definitions; each row's 'source' and the sidecar's Metrics give each "
            "definition's source, Networks each weight file, its sha256 and source) and bids_recon's own 2-way "
            "identification in pixel and feature space; 'status' is 'ok' or 'not computed' with the reason in "
            "'note'; chance of a similarity metric = its mean over mismatched pairs; identification chance = 0.5")
#: What a metric's value is under each selection rule of multi-sample generators (methods text).
_SELECTION_METHODS = {
    "mean": "the mean over the samples",
    "brain_clip": "the best of the samples: per image, the one whose CLIP ViT-L/14 embedding is closest (cosine) to "
                  "the brain-decoded CLIP embedding (MindEye's rule)",
    "oracle_clip": "the best of the samples: per image, the one closest (CLIP cosine) to the seen image, an upper "
                   "bound that uses the seen image",
}


def evaluation_inputs(config: Config, device: str) -> dict[str, Any]:
    """The inputs of an evaluation node: settings, device, downloads allowed, weights' identity, digest cache."""
    from bids_recon.evaluate.networks import weights_fingerprint
    from bids_recon.evaluate.standard import required_networks
    from bids_recon.params import to_dict

    ev = config.workflow.evaluate
    return {"params": to_dict(ev), "device": device, "allow_download": config.execution.allow_download,
            "weights": weights_fingerprint(required_networks(ev.metrics)),
            "hash_cache": str(Path(config.execution.work_dir) / HASH_CACHE)}


def published_comparison(config: Config) -> Comparability:
    """Whether this run's metrics can be put beside the published rows, from its settings.

    Reads ``[workflow.evaluate] dataset``, ``[workflow.stimuli] test_split`` and ``[workflow.evaluate]
    image_size`` (:func:`bids_recon.evaluate.published.comparability`): a dataset preset that sets them (NSD with
    its shared1000 split) makes the run comparable.
    """
    ev = config.workflow.evaluate
    return comparability(ev.dataset, config.workflow.stimuli.test_split, ev.image_size)


def metrics_sink(config: Config, names: SubjectOutputs, generator: str, rows: str, more: str = "",
                 **sidecar: Any) -> pe.Node:
    """The ``ds_metrics`` node of a generator: its metrics table, the node's provenance merged into the sidecar.

    Parameters
    ----------
    rows : str
        What the rows are (the start of the sidecar's Description).
    more : str
        What else the Description says for this generator.
    **sidecar
        More sidecar keys (the generator's settings, its model's identity).
    """
    from bids_recon.workflows.utils import sink

    description = "; ".join(part for part in (f"{rows}: {_COLUMNS}", more) if part)
    return sink(config.execution.output_dir, names.sink("metrics", desc=generator), "ds_metrics", {
        "Description": description, "Generator": generator,
        "PublishedComparison": published_comparison(config).to_sidecar(), **sidecar})


def connect_metrics(wf: pe.Workflow, evaluate: pe.Node, ds_metrics: pe.Node) -> None:
    """Connect an evaluation node's table and its JSON provenance to the metrics sink."""
    from bids_recon.workflows.utils import decoder_sidecar

    wf.connect([(evaluate, ds_metrics, [("metrics", "in_file"), (("metrics", decoder_sidecar), "extra_files")])])


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def evaluation_methods(config: Config, n_samples: int = 1, features: str = "the decoded feature space") -> str:
    """The methods sentences of the evaluation, from the settings that run.

    Parameters
    ----------
    n_samples : int
        Samples per image of the generator (the selection rule is stated when > 1).
    features : str
        Where bids_recon's own feature-space identification is computed.
    """
    ev = config.workflow.evaluate
    selected = select_metrics(ev.metrics)
    of_kind = {kind: [METRICS[m].label for m in selected if METRICS[m].kind == kind]
               for kind in ("pixel", "identification", "distance", "retrieval")}
    parts = []
    if of_kind["pixel"]:
        parts.append(f"{_join(of_kind['pixel'])} ({ev.image_size} px)")
    if of_kind["identification"]:
        parts.append(f"2-way identification over all pairs (chance 50%) in {_join(of_kind['identification'])} "
                     "feature space")
    if of_kind["distance"]:
        parts.append(f"the correlation distance of {_join(of_kind['distance'])} features (lower is better)")
    if of_kind["retrieval"]:
        parts.append(f"{_join([x.lower() for x in of_kind['retrieval']])} (top-1 among up to 300 test images, "
                     "30 draws) where a decoder into CLIP space exists")
    text = ("Reconstructions were evaluated as the field's evaluation code does (MindEye; images resized to 256 px "
            f"first): {_join(parts)}; and with 2-way identification in pixel space and in {features}."
            if parts else f"Reconstructions were evaluated with 2-way identification in pixel space and in {features}.")
    if n_samples > 1:
        text += f" With {n_samples} samples per image, a metric's value is {_SELECTION_METHODS[ev.selection]}."
    return text + (" Metrics whose network weights were not on disk are reported as not computed." if parts else "")


def log_skipped_metrics(config: Config) -> list[str]:
    """Log, once before any work, one line per network whose metrics will not be computed; return the lines."""
    lines = missing_weights_lines(config.workflow.evaluate.metrics, config.execution.allow_download)
    for line in lines:
        LOGGER.warning("%s", line)
    return lines
