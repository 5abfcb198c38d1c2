"""The linear image-basis generator: decoded PCA coefficients -> pixels. Fast, CPU, no weights.

A PCA basis of the training images' pixels, decoded by ridge, mapped back to pixels: the default generator, and
the pipeline's end-to-end check. Its card is :class:`LinearCard`; its part of the workflow is built by
:mod:`bids_recon.workflows.generators.linear`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bids_recon.errors import BadDataError
from bids_recon.evaluate.methods import evaluation_methods
from bids_recon.features.image_basis import ImageBasis
from bids_recon.generate.card import GeneratorCard, RunConfig, register
from bids_recon.params import setting

#: ``desc-`` of the decoding target.
TARGET = "imagepca"


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


@register
class LinearCard(GeneratorCard):
    name = "linear"
    params = LinearParams
    summary = "PCA image basis decoded by ridge (CPU, no weights)"
    options_title = "Linear generator (--generator linear)"
    default = True
    roi_settings = ("roi",)

    def add_options(self, option: Any, paths: Any) -> None:
        option("--decoder-roi", key="roi")
        option("--n-components", key="n_components", type=int)
        option("--image-size", key="image_size", type=int)

    def decoders(self, config: RunConfig) -> list[tuple[str, str]]:
        return [(self.settings(config).roi, TARGET)]

    def feature_spaces(self, config: RunConfig) -> dict[str, str]:
        lin = self.settings(config)
        return {TARGET: f"the {lin.n_components}-component PCA coefficients of the images' pixels "
                        f"({lin.image_size} px)"}

    def methods(self, config: RunConfig) -> str:
        lin, dec = self.settings(config), config.workflow.decoding
        return (f"The decoding target was a {lin.n_components}-component PCA basis of the training images' pixels "
                f"({lin.image_size} px). A decoder ({dec.methods()}) mapped {lin.roi} betas of single training "
                "trials to the targets, and decoded repeat-averaged test betas. "
                "Images were generated with the linear generator (decoded coefficients times the basis, plus the "
                f"mean image). {evaluation_methods(config.workflow.evaluate, 1, 'the decoded PCA space')}")
