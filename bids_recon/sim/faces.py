"""Faces from known latents for the simulator's ``faces`` layout: a HYPER-style experiment (Dado et al. 2022).

``bids_recon-sim OUT --layout faces``: every stimulus is a face made by a small random generator from a known
latent vector ``z ~ N(0, I)`` (:class:`FaceGenerator`: a face template modulated by a random convolutional
network, tanh output in [-1, 1], as a GAN's). The raw dataset's ``stimuli/`` holds the images, the generator as
TorchScript (``generator.pt``) and the latents table (``latents.tsv``: ``stim_file`` then one column per
dimension), exactly what ``bids_recon --generator latent`` reads. Brain responses come from the simulator's usual
model (:func:`bids_recon.sim.model.simulate_subject`): early-visual voxels see the faces' pixels through their
receptive fields, higher-visual voxels respond linearly to the latents (``semantic_weights`` are then per latent
dimension), with the same HRFs, noise and single-trial SNR as every preset. So decoded latents can be checked
against the truth: they correlate with the true ones and identify the test faces far above chance. The layout
itself is registered in :mod:`bids_recon.sim.layouts.faces`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bids_recon.sim.stimuli import StimulusSet

#: Names of the files written into the raw dataset's ``stimuli/``.
GENERATOR_FILE, LATENTS_FILE = "generator.pt", "latents.tsv"
#: Latent dimension of the simulated stimulus set (PGGAN and StyleGAN use 512; small keeps decoding well posed
#: with the presets' few hundred trials).
LATENT_DIM = 16


def face_template(size: int) -> np.ndarray:
    """Pre-tanh logits ``(3, size, size)`` of a plain face: skin oval, dark eyes and brows, a mouth, grey surround."""
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size
    rgb = np.full((size, size, 3), 0.5)

    def ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0

    rgb[ellipse(0.5, 0.5, 0.30, 0.40)] = (0.86, 0.66, 0.55)
    for cx in (0.38, 0.62):
        rgb[ellipse(cx, 0.42, 0.06, 0.035)] = (0.15, 0.12, 0.12)
        rgb[ellipse(cx, 0.35, 0.08, 0.015)] = (0.30, 0.22, 0.18)
    rgb[ellipse(0.5, 0.55, 0.03, 0.07)] = (0.78, 0.56, 0.47)
    rgb[ellipse(0.5, 0.70, 0.10, 0.03)] = (0.65, 0.25, 0.25)
    unit = np.clip(rgb, 0.02, 0.98)
    return np.arctanh(2 * unit - 1).transpose(2, 0, 1).astype(np.float32)


class FaceGenerator(nn.Module):
    """Latents ``(n, latent_dim)`` -> faces ``(n, 3, image_size, image_size)`` in [-1, 1] (TorchScript-able).

    ``tanh(template + gain * (net(z) - offset))``: a linear map to a 4x4 feature map, bilinear 2x upsampling + 3x3
    convolutions + leaky ReLU up to the image size, a 1x1 convolution to RGB. Weights are drawn with ``seed`` (the
    global torch generator is left as it was); ``offset`` (the modulation's mean over random latents) and ``gain``
    (to 0.6 sd, in logits; three quarters of it shared by the colour channels) make the faces vary around the template.
    """

    def __init__(self, latent_dim: int = LATENT_DIM, image_size: int = 32, width: int = 32, seed: int = 0):
        super().__init__()
        self.latent_dim, self.image_size, self.width = int(latent_dim), int(image_size), int(width)
        n_up = max(int(np.ceil(np.log2(max(image_size, 4) / 4))), 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.fc = nn.Linear(self.latent_dim, self.width * 16)
            self.convs = nn.ModuleList([nn.Conv2d(self.width, self.width, 3, padding=1) for _ in range(n_up)])
            self.to_rgb = nn.Conv2d(self.width, 3, 1)
            probe = torch.randn(64, self.latent_dim)
        self.register_buffer("template", torch.from_numpy(face_template(self.image_size)))
        self.register_buffer("offset", torch.zeros(3, self.image_size, self.image_size))
        self.register_buffer("gain", torch.ones(1))
        with torch.no_grad():  # faces vary around the template: the modulation's mean over latents is removed
            made = self.modulation(probe)
            self.offset.copy_(made.mean(0))
            self.gain.fill_(0.6 / float((made - self.offset).std()))

    def modulation(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], self.width, 4, 4)
        for conv in self.convs:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = F.leaky_relu(conv(x), 0.2)
        x = self.to_rgb(x)
        x = 0.75 * x.mean(dim=1, keepdim=True) + 0.25 * x  # mostly shading, a little colour
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=[self.image_size, self.image_size], mode="bilinear", align_corners=False)
        return x

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.template + self.gain * (self.modulation(z) - self.offset))


def make_generator(latent_dim: int = LATENT_DIM, image_size: int = 32, seed: int = 0) -> FaceGenerator:
    """The simulator's face generator (eval mode); ``torch.jit.script`` exports it."""
    return FaceGenerator(latent_dim, image_size, seed=seed).eval()


def save_generator(generator: Any, path: Path) -> Path:
    """Write ``generator`` as a TorchScript file (``torch.jit.script`` + ``torch.jit.save``)."""
    from bids_recon.io import atomic_write

    buffer = io.BytesIO()  # in memory: the archive's folder name would be the (temporary) file's
    with warnings.catch_warnings():  # recent torch deprecates TorchScript, still the portable format here
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(generator), buffer)
    return atomic_write(Path(path), lambda tmp: tmp.write_bytes(buffer.getvalue()))


def latents_table(stim_files: list[str], latents: np.ndarray) -> pd.DataFrame:
    """The latents TSV's table: ``stim_file`` then ``latent_000 ...`` (one column per dimension)."""
    columns = {f"latent_{k:03d}": latents[:, k] for k in range(latents.shape[1])}
    return pd.DataFrame({"stim_file": stim_files, **columns})


@dataclass
class FaceStimulusSet(StimulusSet):
    """The faces (see :class:`~bids_recon.sim.stimuli.StimulusSet`) with their latents and the generator.

    Attributes
    ----------
    latents : ndarray, shape (n_stimuli, latent_dim), float32
        Row ``i`` generated stimulus ``stim_id`` ``i + 1``.
    generator : torch.nn.Module
        The generator that made the images.
    """

    latents: np.ndarray = None  # type: ignore[assignment]
    generator: Any = None


def make_face_stimuli(rng: np.random.Generator, n_train: int, n_test: int, n_test_repeats: int, image_size: int,
                      latent_dim: int = LATENT_DIM) -> FaceStimulusSet:
    """Draw the latents, generate the faces, split them into training and test stimuli.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the latents, the split and the generator's seed.
    n_train, n_test, n_test_repeats, image_size : int
        As the preset's.
    latent_dim : int
        Dimension of the latents.

    Returns
    -------
    FaceStimulusSet
        ``images`` are the generator's output on ``latents`` mapped to [0, 1] and rounded to 8 bits (the PNGs).
    """
    n = n_train + n_test
    generator = make_generator(latent_dim, image_size, seed=int(rng.integers(0, 2**31 - 1)))
    latents = rng.standard_normal((n, latent_dim)).astype(np.float32)
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.choice(n, n_test, replace=False)] = True
    with torch.inference_mode():
        made = generator(torch.from_numpy(latents)).permute(0, 2, 3, 1).numpy()
    images = (np.round(np.clip((made + 1) / 2, 0, 1) * 255) / 255).astype(np.float32)
    files = [f"face-{i + 1:04d}.png" for i in range(n)]
    table = pd.DataFrame({"stim_file": files, "stim_id": np.arange(1, n + 1),
                          "split": np.where(is_test, "test", "train"),
                          "n_repeats": np.where(is_test, n_test_repeats, 1)})
    captions = pd.DataFrame({"stim_file": files, "caption": ["a photo of a face"] * n})
    return FaceStimulusSet(images=images, table=table, captions=captions, latents=latents, generator=generator)


def write_face_files(bids_dir: Path, truth_dir: Path, stim: FaceStimulusSet) -> None:
    """Write ``stimuli/generator.pt`` (TorchScript) and ``stimuli/latents.tsv`` (also into the ground truth); the
    READMEs say how the faces were made."""
    from bids_recon.io import write_tsv

    stim_dir = Path(bids_dir) / "stimuli"
    save_generator(stim.generator, stim_dir / GENERATOR_FILE)
    table = latents_table(list(stim.table["stim_file"]), stim.latents)
    write_tsv(stim_dir / LATENTS_FILE, table)
    write_tsv(Path(truth_dir) / LATENTS_FILE, table)
    note = FACES_README.format(dim=stim.latents.shape[1], generator=GENERATOR_FILE, latents=LATENTS_FILE)
    for readme in (Path(bids_dir) / "README", Path(truth_dir) / "README.md"):
        readme.write_text(readme.read_text() + note)


FACES_README = """
## Layout "faces" (a HYPER-style experiment)

The stimuli are not objects but faces, each generated from a known {dim}-d latent vector z ~ N(0, I) by a small
random generator (a face template modulated by a random convolutional network, tanh output in [-1, 1]):
stimuli/{generator} is that generator as TorchScript (latents (n, {dim}) -> images (n, 3, H, W)), and
stimuli/{latents} the latents table (stim_file, then one column per dimension). Early-visual voxels respond to
the faces' pixels through their receptive fields; higher-visual voxels respond linearly to the latents
(`semantic_weights` of the ground truth are per latent dimension, not per category). Run the pipeline with
`--generator latent --latent-generator stimuli/{generator}` (the latents table is the default
`--latents stimuli/{latents}`).
"""

__all__ = ["FaceGenerator", "FaceStimulusSet", "GENERATOR_FILE", "LATENTS_FILE", "LATENT_DIM", "face_template",
           "latents_table", "make_face_stimuli", "make_generator", "save_generator", "write_face_files"]
