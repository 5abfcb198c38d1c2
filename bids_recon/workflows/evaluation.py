"""Wiring every generator's evaluation shares: the node's inputs, the metrics sink.

A generator's evaluation node is an interface on :class:`bids_recon.interfaces.stages.EvaluationInputSpec` that
calls :func:`bids_recon.evaluate.evaluate_generated` once; its part of the workflow gives it
:func:`evaluation_inputs` and writes its table with :func:`metrics_sink` + :func:`connect_metrics`; its card
describes it with :func:`bids_recon.evaluate.methods.evaluation_methods`. Which metrics cannot be computed
(weights not on disk) is said once, before any work, by :func:`log_skipped_metrics`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bids_recon.evaluate.published import Comparability, comparability
from bids_recon.evaluate.standard import missing_weights_lines

if TYPE_CHECKING:  # pragma: no cover
    from nipype.pipeline import engine as pe

    from bids_recon.config import Config
    from bids_recon.naming import SubjectOutputs

LOGGER = logging.getLogger("bids_recon.evaluate")

#: File of the work directory remembering the evaluation networks' sha256 between runs.
HASH_CACHE = "evaluation_weights_sha256.json"
#: What the metrics sidecar says of every table.
_COLUMNS = ("the field's metrics (MindEye's definitions; each row's 'source' and the sidecar's Metrics give each "
            "definition's source, Networks each weight file, its sha256 and source) and bids_recon's own 2-way "
            "identification in pixel and feature space; 'status' is 'ok' or 'not computed' with the reason in "
            "'note'; chance of a similarity metric = its mean over mismatched pairs; identification chance = 0.5")


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


def log_skipped_metrics(config: Config) -> list[str]:
    """Log, once before any work, one line per network whose metrics will not be computed; return the lines."""
    lines = missing_weights_lines(config.workflow.evaluate.metrics, config.execution.allow_download)
    for line in lines:
        LOGGER.warning("%s", line)
    return lines
