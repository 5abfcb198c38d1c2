"""The linear image-basis generator: decoded PCA coefficients -> pixels. Fast, CPU, no weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_recon.errors import BadDataError
from bids_recon.features.image_basis import ImageBasis
from bids_recon.params import setting


@dataclass
class LinearParams:
    """Settings of the linear generator (``[workflow.generate.linear]``)."""

    roi: str = setting("earlyvisual", doc="ROI whose betas feed the decoder")
    n_components: int = setting(64, ge=1, doc="components of the pixel PCA basis decoded by the linear generator")
    image_size: int = setting(64, ge=8, le=1024, doc=(
        "stimuli are loaded at this size (pixels) for the PCA basis and the reconstructions"))


class LinearImageGenerator:
    """Reconstruct images as ``mean + coefficients @ components`` of an :class:`ImageBasis`."""

    name = "linear"

    def __init__(self, basis: ImageBasis) -> None:
        self.basis = basis

    def generate(self, coefficients: np.ndarray) -> np.ndarray:
        """Images ``(n, H, W, 3)`` in [0, 1] from decoded coefficients ``(n, n_components)``."""
        if coefficients.ndim != 2 or coefficients.shape[1] != self.basis.n_components:
            raise BadDataError(
                f"expected coefficients of shape (n, {self.basis.n_components}), got {coefficients.shape}"
            )
        return self.basis.decode(coefficients)
