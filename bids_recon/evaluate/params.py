"""Settings of the evaluation (``[workflow.evaluate]``): the one place their defaults live."""

from __future__ import annotations

from dataclasses import dataclass

from bids_recon.params import setting

#: Image size (pixels) at which PixCorr and SSIM are computed, as in the field's code (NSD's stimuli are 425 px).
EVAL_SIZE = 425


@dataclass
class EvaluationParams:
    """How reconstructions are compared with the seen images."""

    image_size: int = setting(EVAL_SIZE, ge=8, doc="size (px) at which PixCorr and SSIM are computed")
