"""A linear image basis (PCA of pixels) fitted on the training stimuli: the skeleton's decoding target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.features.stimuli import StimulusResolver
from bids_recon.io import save_npz


@dataclass
class ImageBasis:
    """Principal components of stimulus pixels.

    Attributes
    ----------
    mean : ndarray, shape (n_pixels,)
        Mean training image, flattened (H * W * 3).
    components : ndarray, shape (n_components, n_pixels)
        Orthonormal components.
    explained_variance_ratio : ndarray, shape (n_components,)
    image_shape : tuple of int
        ``(H, W, 3)``.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    image_shape: tuple[int, int, int]

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Project images ``(n, H, W, 3)`` to coefficients ``(n, n_components)``."""
        flat = images.reshape(len(images), -1).astype(np.float32)
        return ((flat - self.mean) @ self.components.T).astype(np.float32)

    def decode(self, coefficients: np.ndarray) -> np.ndarray:
        """Images ``(n, H, W, 3)`` in [0, 1] from coefficients ``(n, n_components)``."""
        flat = coefficients.astype(np.float32) @ self.components + self.mean
        return np.clip(flat, 0.0, 1.0).reshape(len(coefficients), *self.image_shape)

    def save(self, path: Path) -> Path:
        return save_npz(path, mean=self.mean, components=self.components,
                        explained_variance_ratio=self.explained_variance_ratio,
                        image_shape=np.asarray(self.image_shape))

    @classmethod
    def load(cls, path: Path) -> ImageBasis:
        with np.load(path) as data:
            return cls(data["mean"], data["components"], data["explained_variance_ratio"],
                       tuple(int(v) for v in data["image_shape"]))


def fit_image_basis(images: np.ndarray, n_components: int, seed: int = 0) -> ImageBasis:
    """Fit a PCA basis to training images.

    Parameters
    ----------
    images : ndarray, shape (n_images, H, W, 3)
        Training stimuli in [0, 1].
    n_components : int
        Capped at ``n_images - 1``.
    seed : int
        Seed of the randomized SVD.
    """
    from sklearn.decomposition import PCA

    if images.ndim != 4 or images.shape[-1] != 3:
        from bids_recon.errors import BadDataError

        raise BadDataError(f"images must be (n, H, W, 3), got {images.shape}")
    n_components = int(min(n_components, len(images) - 1, images[0].size))
    flat = images.reshape(len(images), -1).astype(np.float32)
    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=seed).fit(flat)
    return ImageBasis(pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                      pca.explained_variance_ratio_.astype(np.float32), tuple(images.shape[1:]))


def image_targets(
    resolver: StimulusResolver, trials: pd.DataFrame, image_size: int, n_components: int, seed: int = 0
) -> tuple[ImageBasis, np.ndarray, np.ndarray]:
    """Fit the pixel basis on the training stimuli and encode every stimulus of the trial table.

    Parameters
    ----------
    resolver : StimulusResolver
    trials : pandas.DataFrame
        The participant's trial table (``stim_id``, ``split``).
    image_size : int
        Images are loaded at ``(image_size, image_size, 3)``.
    n_components : int

    Returns
    -------
    basis : ImageBasis
    stim_ids : ndarray of str, shape (n_stimuli,)
        Every stimulus of the table, sorted.
    coefficients : ndarray, shape (n_stimuli, n_components)
    """
    stim_ids = np.array(sorted(trials["stim_id"].astype(str).unique()))
    train_ids = set(trials.loc[trials["split"] == "train", "stim_id"].astype(str))
    images = resolver.load_images(list(stim_ids), image_size)
    is_train = np.array([s in train_ids for s in stim_ids])
    basis = fit_image_basis(images[is_train], n_components, seed=seed)
    return basis, stim_ids, basis.encode(images)
