"""Published rows of the field's metrics table, for showing beside a run's own (NSD, subject average).

Values are fractions (identification and retrieval as 0-1, not %), keyed by the metric ids of
:data:`bids_recon.evaluate.standard.METRICS`; a metric a paper did not report is absent. Every number here is
the one recorded in the project's reference notes (``shared/REFERENCE.md``, "Standard metrics"); rows and metrics
that were not recorded there are left out rather than filled from memory.

The numbers come from two tables with different protocols, kept apart (:data:`PROTOCOLS`): the MindEye2 paper's
Table 1 recomputed every method with the same code on NSD's 1,000 shared images (all 40 sessions), while the
MindEye1 paper's table gives each method's own numbers on the 982 shared images of the 37 public sessions (Takagi &
Nishimoto's with their own evaluation). A run on other data, or on NSD with another split, is not comparable with
either: :func:`comparability` decides it from a run's settings, :func:`row_note` per row from the run's number of
test images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bids_recon.evaluate.metrics import EVAL_SIZE


@dataclass(frozen=True)
class Protocol:
    """How a published table was computed.

    Attributes
    ----------
    label : str
        Short name shown in the reports' ``Data`` column.
    source : str
        The paper and table.
    test_images : int
        NSD shared images averaged over (subjects 1, 2, 5, 7).
    sessions : int
        NSD sessions the test trials come from.
    description : str
        One sentence for the report.
    """

    label: str
    source: str
    test_images: int
    sessions: int
    description: str


#: The published tables' protocols.
PROTOCOLS: dict[str, Protocol] = {
    "mindeye2": Protocol(
        "NSD shared1000, 1,000 images, 40 sessions (MindEye2 Table 1)",
        "Scotti et al. 2024 (MindEye2, ICML), Table 1", 1000, 40,
        "every method recomputed by MindEye2's authors with the same evaluation code"),
    "mindeye1": Protocol(
        "NSD shared1000, 982 images, 37 sessions (MindEye1 table)",
        "Scotti et al. 2023 (MindEye, NeurIPS), table of NSD reconstruction metrics", 982, 37,
        "each method's own numbers as published (Takagi & Nishimoto's with their own evaluation)"),
}


@dataclass(frozen=True)
class PublishedRow:
    """One method's published NSD averages.

    Attributes
    ----------
    method : str
        The method as cited.
    protocol : str
        Key of :data:`PROTOCOLS`: which table, which test images, which evaluation.
    values : dict
        Metric id -> value (fractions).
    """

    method: str
    protocol: str
    values: dict[str, float] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Where the numbers come from (paper and table, as recorded in shared/REFERENCE.md)."""
        return PROTOCOLS[self.protocol].source


def _mindeye2(pixcorr, ssim, alex2, alex5, incep, clip, effnet, swav, **retrieval) -> dict[str, float]:
    return {"pixcorr": pixcorr, "ssim": ssim, "alexnet2": alex2 / 100, "alexnet5": alex5 / 100,
            "inceptionv3": incep / 100, "clip": clip / 100, "effnet": effnet, "swav": swav,
            **{f"retrieval_{k}": v / 100 for k, v in retrieval.items()}}


PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow("Takagi & Nishimoto 2023", "mindeye2", _mindeye2(.246, .410, 78.9, 85.6, 83.8, 82.1, .811, .504)),
    PublishedRow("Brain-Diffuser (Ozcelik & VanRullen 2023)", "mindeye2",
                 _mindeye2(.273, .365, 94.4, 96.6, 91.3, 90.9, .728, .421)),
    PublishedRow("MindEye1 (Scotti et al. 2023)", "mindeye2",
                 _mindeye2(.319, .360, 92.8, 96.9, 94.6, 93.3, .648, .377)),
    PublishedRow("MindEye2 (Scotti et al. 2024)", "mindeye2",
                 _mindeye2(.322, .431, 96.1, 98.6, 95.4, 93.0, .619, .344, image=98.8, brain=98.3)),
    PublishedRow("MindEye2, one session of a new subject", "mindeye2",
                 _mindeye2(.195, .419, 84.2, 90.6, 81.2, 79.2, .810, .468, image=79.0, brain=57.4)),
    PublishedRow("Takagi & Nishimoto 2023 (own evaluation)", "mindeye1",
                 {"alexnet2": 0.830, "alexnet5": 0.830, "inceptionv3": 0.760, "clip": 0.770}),
    PublishedRow("Brain-Diffuser (Ozcelik & VanRullen 2023)", "mindeye1",
                 {"pixcorr": 0.254, "ssim": 0.356, "alexnet2": 0.942, "alexnet5": 0.962, "inceptionv3": 0.872,
                  "clip": 0.915}),
)

#: The published table's columns, in order (metric ids of :data:`bids_recon.evaluate.standard.METRICS`).
LAYOUT = ("pixcorr", "ssim", "alexnet2", "alexnet5", "inceptionv3", "clip", "effnet", "swav", "retrieval_image",
          "retrieval_brain")
#: Datasets with published rows -> words one of which the test-split rule must name to be the published split
#: (NSD: the 1,000 shared images, ``shared1000`` in the stimulus info table, ``sharedix`` in the design file).
PUBLISHED_SPLITS: dict[str, tuple[str, ...]] = {"nsd": ("shared1000", "sharedix")}


@dataclass(frozen=True)
class Comparability:
    """Whether a run's numbers can be put beside the published rows.

    Attributes
    ----------
    comparable : bool
        The run is on the published data with the published split and conventions.
    reason : str
        Why not (empty when comparable), e.g. ``different data: ...``.
    dataset, test_split : str
        The settings the decision was made from.
    """

    comparable: bool
    reason: str
    dataset: str = ""
    test_split: str = ""

    def to_sidecar(self) -> dict[str, Any]:
        """The decision as sidecar keys (the reports read them back)."""
        return {"Comparable": self.comparable, "Reason": self.reason, "Dataset": self.dataset,
                "TestSplit": self.test_split}


def comparability(dataset: str, test_split: str, pixel_size: int = EVAL_SIZE) -> Comparability:
    """Whether a run with these settings is comparable with :data:`PUBLISHED`.

    Parameters
    ----------
    dataset : str
        The run's dataset as the published tables name it (``[workflow.evaluate] dataset``; ``nsd``), or empty.
    test_split : str
        The run's test-split rule (``[workflow.stimuli] test_split``); for NSD it must name the shared images
        (:data:`PUBLISHED_SPLITS`).
    pixel_size : int
        Size (px) of PixCorr and SSIM (published: :data:`~bids_recon.evaluate.metrics.EVAL_SIZE`).

    Returns
    -------
    Comparability
        ``comparable`` only for NSD with its shared1000 split at 425 px; otherwise the reason starts with
        ``different data`` (or ``different preprocessing``).
    """
    dataset, test_split = str(dataset or "").strip().lower(), str(test_split or "").strip()
    if dataset not in PUBLISHED_SPLITS:
        what = f"dataset '{dataset}'" if dataset else "not NSD ([workflow.evaluate] dataset is not 'nsd')"
        return Comparability(False, f"different data: {what}; the published rows are NSD shared1000 averages",
                             dataset, test_split)
    words = PUBLISHED_SPLITS[dataset]
    if not any(word in test_split.lower() for word in words):
        split = f"'{test_split}'" if test_split else "by repeats"
        return Comparability(False, f"different data: {dataset.upper()} with the test split {split}, not the "
                             f"published one ({' or '.join(words)})", dataset, test_split)
    if pixel_size != EVAL_SIZE:
        return Comparability(False, f"different preprocessing: PixCorr and SSIM at {pixel_size} px, published at "
                             f"{EVAL_SIZE} px", dataset, test_split)
    return Comparability(True, "", dataset, test_split)


def published_table() -> list[dict[str, Any]]:
    """The published rows as records: ``method``, ``protocol``, ``source`` and one value (or None) per
    :data:`LAYOUT` id."""
    return [{"method": row.method, "protocol": row.protocol, "source": row.source,
             **{m: row.values.get(m) for m in LAYOUT}} for row in PUBLISHED]


def row_note(protocol: str, comparable: bool, test_images: int | None = None) -> str:
    """What a published row is, beside a run: its protocol, and whether the run's data are the same.

    Parameters
    ----------
    protocol : str
        Key of :data:`PROTOCOLS`.
    comparable : bool
        The run is on NSD with the published split (:func:`comparability`).
    test_images : int, optional
        The run's number of test images (a published protocol averages over its own number).
    """
    spec = PROTOCOLS[protocol]
    if not comparable:
        return f"{spec.label}: different data"
    if test_images is not None and int(test_images) != spec.test_images:
        return f"{spec.label}: other test images ({spec.test_images} vs this run's {int(test_images)})"
    return spec.label


__all__ = ["LAYOUT", "PROTOCOLS", "PUBLISHED", "PUBLISHED_SPLITS", "Comparability", "Protocol", "PublishedRow",
           "comparability", "published_table", "row_note"]
