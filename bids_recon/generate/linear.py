"""The linear image-basis generator: decoded PCA coefficients -> pixels. Fast, CPU, no weights."""

from __future__ import annotations

import numpy as np

from bids_recon.features.image_basis import ImageBasis


class LinearImageGenerator:
    """Reconstruct images as ``mean + coefficients @ components`` of an :class:`ImageBasis`."""

    name = "linear"

    def __init__(self, basis: ImageBasis) -> None:
        self.basis = basis

    def generate(self, coefficients: np.ndarray) -> np.ndarray:
        """Images ``(n, H, W, 3)`` in [0, 1] from decoded coefficients ``(n, n_components)``."""
        if coefficients.ndim != 2 or coefficients.shape[1] != self.basis.n_components:
            raise ValueError(
                f"expected coefficients of shape (n, {self.basis.n_components}), got {coefficients.shape}"
            )
        return self.basis.decode(coefficients)
