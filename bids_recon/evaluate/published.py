"""Published rows of the field's metrics table, for showing beside a run's own (NSD, subject average).

Values are fractions (identification and retrieval as 0-1, not %), keyed by the metric ids of
:data:`bids_recon.evaluate.standard.METRICS`; a metric a paper did not report is absent. Every number here is
the one recorded in the project's reference notes (``shared/REFERENCE.md``, "Standard metrics"), which took them
from the MindEye2 paper's table of NSD averages; rows and metrics that were not recorded there are left out
rather than filled from memory.

These numbers were obtained on NSD (``shared1000`` test images, subjects 1, 2, 5, 7, 40 sessions or the 37
public ones); a run on other data, or on NSD with another split, is not comparable with them:
:func:`comparability` decides it from a run's settings. MindEye (Scotti et al. 2023) has no row: its numbers were
not recorded in the reference notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PublishedRow:
    """One method's published NSD averages.

    Attributes
    ----------
    method : str
        The method as cited.
    source : str
        Where the numbers come from.
    values : dict
        Metric id -> value (fractions).
    """

    method: str
    source: str
    values: dict[str, float] = field(default_factory=dict)


_SOURCE = ("Scotti et al. 2024 (MindEye2, ICML), table of NSD reconstruction metrics (subject average), "
           "as recorded in shared/REFERENCE.md")

PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow("Takagi & Nishimoto 2023", _SOURCE,
                 {"alexnet2": 0.830, "alexnet5": 0.830, "inceptionv3": 0.760, "clip": 0.770}),
    PublishedRow("Brain-Diffuser (Ozcelik & VanRullen 2023)", _SOURCE,
                 {"pixcorr": 0.254, "ssim": 0.356, "alexnet2": 0.942, "alexnet5": 0.962, "inceptionv3": 0.872,
                  "clip": 0.915}),
    PublishedRow("MindEye2 (Scotti et al. 2024)", _SOURCE,
                 {"pixcorr": 0.322, "ssim": 0.431, "alexnet2": 0.961, "alexnet5": 0.986, "inceptionv3": 0.954,
                  "clip": 0.930}),
)

#: The published table's columns, in order (metric ids of :data:`bids_recon.evaluate.standard.METRICS`).
LAYOUT = ("pixcorr", "ssim", "alexnet2", "alexnet5", "inceptionv3", "clip", "effnet", "swav", "retrieval_image",
          "retrieval_brain")
#: Datasets with published rows -> words one of which the test-split rule must name to be the published split
#: (NSD: the 1,000 shared images, ``shared1000`` in the stimulus info table, ``sharedix`` in the design file).
PUBLISHED_SPLITS: dict[str, tuple[str, ...]] = {"nsd": ("shared1000", "sharedix")}
#: Size (px) of PixCorr and SSIM in the published tables.
PUBLISHED_PIXEL_SIZE = 425


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


def comparability(dataset: str, test_split: str, pixel_size: int = PUBLISHED_PIXEL_SIZE) -> Comparability:
    """Whether a run with these settings is comparable with :data:`PUBLISHED`.

    Parameters
    ----------
    dataset : str
        The run's dataset as the published tables name it (``[workflow.evaluate] dataset``; ``nsd``), or empty.
    test_split : str
        The run's test-split rule (``[workflow.stimuli] test_split``); for NSD it must name the shared images
        (:data:`PUBLISHED_SPLITS`).
    pixel_size : int
        Size (px) of PixCorr and SSIM (published: 425).

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
    if pixel_size != PUBLISHED_PIXEL_SIZE:
        return Comparability(False, f"different preprocessing: PixCorr and SSIM at {pixel_size} px, published at "
                             f"{PUBLISHED_PIXEL_SIZE} px", dataset, test_split)
    return Comparability(True, "", dataset, test_split)


def published_table() -> list[dict[str, Any]]:
    """The published rows as records: ``method``, ``source`` and one value (or None) per :data:`LAYOUT` id."""
    return [{"method": row.method, "source": row.source, **{m: row.values.get(m) for m in LAYOUT}}
            for row in PUBLISHED]


__all__ = ["LAYOUT", "PUBLISHED", "PUBLISHED_SPLITS", "Comparability", "PublishedRow", "comparability",
           "published_table"]
