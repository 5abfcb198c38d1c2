"""Settings of the ridge decoders (``[workflow.decoding]``): the one place their defaults live."""

from __future__ import annotations

from dataclasses import dataclass

from bids_recon.params import setting


@dataclass
class DecodingParams:
    """How decoders are fitted (see :func:`bids_recon.decoding.fit_ridge_decoder`)."""

    alphas: list[float] = setting(factory=lambda: [10.0**k for k in range(0, 9)], gt=0, min_items=1,
                                  doc="ridge penalties tried; the best is chosen per target by cross-validation")
    cv_folds: int = setting(5, ge=2, le=100, doc="contiguous cross-validation folds of the training trials")
