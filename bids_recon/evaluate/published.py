"""Published rows of the field's metrics table, for showing beside a run's own (NSD, subject average).

Values are fractions (identification and retrieval as 0-1, not %), keyed by the metric ids of
:data:`bids_recon.evaluate.standard.METRICS`; a metric a paper did not report is absent. Every number here is
the one recorded in the project's reference notes (``shared/REFERENCE.md``, "Standard metrics"), which took them
from the MindEye2 paper's table of NSD averages; rows and metrics that were not recorded there are left out
rather than filled from memory.

These numbers were obtained on NSD (``shared1000`` test images, subjects 1, 2, 5, 7, 40 sessions or the 37
public ones); a run on other data, or on NSD with another split, is not comparable with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

__all__ = ["PUBLISHED", "PublishedRow"]
