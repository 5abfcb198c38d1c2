"""The methods sentences of the evaluation, from the settings that run (every generator's paragraph ends with them)."""

from __future__ import annotations

from bids_recon.evaluate.params import EvaluationParams
from bids_recon.evaluate.standard import METRICS, select_metrics

#: What a metric's value is under each selection rule of multi-sample generators (methods text).
SELECTION_METHODS = {
    "mean": "the mean over the samples",
    "brain_clip": "the best of the samples: per image, the one whose CLIP ViT-L/14 embedding is closest (cosine) to "
                  "the brain-decoded CLIP embedding (MindEye's rule)",
    "oracle_clip": "the best of the samples: per image, the one closest (CLIP cosine) to the seen image, an upper "
                   "bound that uses the seen image",
}


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def evaluation_methods(ev: EvaluationParams, n_samples: int = 1, features: str = "the decoded feature space") -> str:
    """The methods sentences of the evaluation.

    Parameters
    ----------
    ev : EvaluationParams
        The run's ``[workflow.evaluate]`` settings.
    n_samples : int
        Samples per image of the generator (the selection rule is stated when > 1).
    features : str
        Where bids_recon's own feature-space identification is computed.
    """
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
        text += f" With {n_samples} samples per image, a metric's value is {SELECTION_METHODS[ev.selection]}."
    return text + (" Metrics whose network weights were not on disk are reported as not computed." if parts else "")


__all__ = ["SELECTION_METHODS", "evaluation_methods"]
