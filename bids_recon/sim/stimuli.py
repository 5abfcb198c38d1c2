"""Synthetic stimulus images: a textured background plus one coloured object, with captions.

Low-level structure: object position, size, colour, outline and the background's colour and luminance
gradient. Semantic structure: the object's category (one drawn shape per category), named in captions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

CATEGORIES: tuple[str, ...] = ("ball", "box", "tent", "ring", "cross", "bar", "star", "kite")
"""Object categories; each is drawn as a distinct shape (disc, square, triangle, annulus, cross, bar,
five-pointed star, diamond)."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (45, 85, 215),
    "yellow": (235, 205, 40),
    "purple": (140, 60, 175),
    "orange": (245, 135, 30),
}
"""Named object colours (8-bit RGB)."""

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "white": (222, 222, 215),
    "black": (40, 40, 45),
    "beige": (200, 185, 150),
    "light blue": (150, 190, 225),
}
"""Named background colours (8-bit RGB)."""

_SUPERSAMPLE = 4


@dataclass
class StimulusSet:
    """The images and their description.

    Attributes
    ----------
    images : ndarray, shape (n_stimuli, size, size, 3), float32
        RGB pixel values in [0, 1], exactly the 8-bit PNG values / 255; row i is ``stim_id`` i + 1.
    table : DataFrame
        One row per stimulus: stim_file, stim_id (1-based, the number in the file name), category,
        colour, background, x, y (object centre as a fraction of width/height from the top-left corner),
        size (object extent as a fraction of the width), split (train/test), n_repeats.
    captions : DataFrame
        One row per caption: stim_file, caption (2-3 per image).
    """

    images: np.ndarray
    table: pd.DataFrame
    captions: pd.DataFrame


def _shape_polygons(category: str, cx: float, cy: float, r: float) -> list[tuple[str, list[float]]]:
    """Drawing primitives of one object: a list of (kind, coords) with kind in ellipse/polygon/hole."""
    if category == "ball":
        return [("ellipse", [cx - r, cy - r, cx + r, cy + r])]
    if category == "box":
        h = 0.8 * r
        return [("polygon", [cx - h, cy - h, cx + h, cy - h, cx + h, cy + h, cx - h, cy + h])]
    if category == "tent":
        return [("polygon", [cx, cy - r, cx + r, cy + 0.8 * r, cx - r, cy + 0.8 * r])]
    if category == "ring":
        q = 0.55 * r
        return [("ellipse", [cx - r, cy - r, cx + r, cy + r]), ("hole", [cx - q, cy - q, cx + q, cy + q])]
    if category == "cross":
        t = 0.3 * r
        return [
            ("polygon", [cx - r, cy - t, cx + r, cy - t, cx + r, cy + t, cx - r, cy + t]),
            ("polygon", [cx - t, cy - r, cx + t, cy - r, cx + t, cy + r, cx - t, cy + r]),
        ]
    if category == "bar":
        t = 0.28 * r
        return [("polygon", [cx - r, cy - t, cx + r, cy - t, cx + r, cy + t, cx - r, cy + t])]
    if category == "star":
        ang = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1).ravel()
        return [("polygon", pts.tolist())]
    if category == "kite":
        return [("polygon", [cx, cy - r, cx + 0.62 * r, cy, cx, cy + r, cx - 0.62 * r, cy])]
    raise ValueError(f"unknown category {category!r}")


def draw_object_mask(category: str, x: float, y: float, size: float, image_size: int) -> np.ndarray:
    """Anti-aliased coverage of one object.

    Parameters
    ----------
    category : str
        One of :data:`CATEGORIES`.
    x, y : float
        Object centre as a fraction of the image width/height (from the top-left corner).
    size : float
        Object extent (diameter) as a fraction of the image width.
    image_size : int
        Width and height of the image in pixels.

    Returns
    -------
    ndarray, shape (image_size, image_size), float32
        Coverage in [0, 1].
    """
    big = image_size * _SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    for kind, coords in _shape_polygons(category, x * big, y * big, size * big / 2):
        if kind == "ellipse":
            draw.ellipse(coords, fill=255)
        elif kind == "hole":
            draw.ellipse(coords, fill=0)
        else:
            draw.polygon(coords, fill=255)
    small = canvas.resize((image_size, image_size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _smooth_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency texture with zero mean and unit-ish amplitude, shape (size, size)."""
    coarse = rng.standard_normal((5, 5)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    tex = np.asarray(img, dtype=np.float32)
    return (tex - tex.mean()) / (tex.std() + 1e-6)


def _position_phrase(x: float, y: float) -> str:
    """Where the object is, as a prepositional phrase ("in the upper left", "at the top", ...)."""
    col = "left" if x < 0.4 else ("right" if x > 0.6 else "")
    row = "upper" if y < 0.4 else ("lower" if y > 0.6 else "")
    if row and col:
        return f"in the {row} {col}"
    if row:
        return "at the top" if row == "upper" else "at the bottom"
    if col:
        return f"on the {col}"
    return "in the centre"


def _size_word(size: float) -> str:
    return "small" if size < 0.3 else ("large" if size > 0.4 else "medium-sized")


def make_stimuli(
    rng: np.random.Generator, n_train: int, n_test: int, n_test_repeats: int, image_size: int
) -> StimulusSet:
    """Draw the stimulus set (shared by all subjects).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n_train, n_test : int
        Numbers of training and test stimuli.
    n_test_repeats : int
        Presentations of each test stimulus (recorded in the table).
    image_size : int
        Width and height of the images.

    Returns
    -------
    StimulusSet
    """
    n = n_train + n_test
    cat_idx = rng.permutation(np.resize(np.arange(len(CATEGORIES)), n))
    col_names = list(COLOURS)
    bg_names = list(BACKGROUNDS)
    col_idx = rng.integers(0, len(col_names), n)
    bg_idx = rng.integers(0, len(bg_names), n)
    size = rng.uniform(0.2, 0.5, n)
    lo = np.maximum(0.2, size / 2 + 0.02)
    x = lo + (1 - 2 * lo) * rng.uniform(0, 1, n)
    y = lo + (1 - 2 * lo) * rng.uniform(0, 1, n)
    grad_angle = rng.uniform(0, 2 * np.pi, n)
    grad_amp = rng.uniform(0.1, 0.3, n)
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.choice(n, n_test, replace=False)] = True

    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / max(image_size - 1, 1) - 0.5
    images = np.empty((n, image_size, image_size, 3), dtype=np.float32)
    rows: list[dict[str, object]] = []
    caps: list[dict[str, str]] = []
    for i in range(n):
        tex = _smooth_texture(rng, image_size)
        shade = 1.0 + grad_amp[i] * (np.cos(grad_angle[i]) * xx + np.sin(grad_angle[i]) * yy) * 2 + 0.04 * tex
        bg = np.asarray(BACKGROUNDS[bg_names[bg_idx[i]]], dtype=np.float32) / 255.0
        obj = np.asarray(COLOURS[col_names[col_idx[i]]], dtype=np.float32) / 255.0
        alpha = draw_object_mask(CATEGORIES[cat_idx[i]], x[i], y[i], size[i], image_size)[..., None]
        obj_shade = 1.0 + 0.05 * tex[..., None]
        img = bg * shade[..., None] * (1 - alpha) + obj * obj_shade * alpha
        images[i] = np.round(np.clip(img, 0, 1) * 255) / 255.0
        stim_file = f"stim-{i + 1:04d}.png"
        cat, col, bgn = CATEGORIES[cat_idx[i]], col_names[col_idx[i]], bg_names[bg_idx[i]]
        rows.append(
            {
                "stim_file": stim_file,
                "stim_id": i + 1,
                "category": cat,
                "colour": col,
                "background": bgn,
                "x": round(float(x[i]), 4),
                "y": round(float(y[i]), 4),
                "size": round(float(size[i]), 4),
                "split": "test" if is_test[i] else "train",
                "n_repeats": n_test_repeats if is_test[i] else 1,
            }
        )
        texts = [
            f"a {_size_word(size[i])} {col} {cat} {_position_phrase(x[i], y[i])}",
            f"a {col} {cat} on a {bgn} background",
        ]
        if rng.uniform() < 0.5:
            texts.append(f"a photo of a {cat}")
        caps.extend({"stim_file": stim_file, "caption": t} for t in texts)
    return StimulusSet(images=images, table=pd.DataFrame(rows), captions=pd.DataFrame(caps))


def save_pngs(images: np.ndarray, files: list[str], out_dir: str | Path) -> None:
    """Write 8-bit RGB PNGs.

    Parameters
    ----------
    images : ndarray, shape (n, h, w, 3)
        Pixel values in [0, 1].
    files : list of str
        File names, one per image.
    out_dir : path-like
        Destination folder (must exist).
    """
    out = Path(out_dir)
    data = np.round(images * 255).astype(np.uint8)
    for img, name in zip(data, files, strict=True):
        Image.fromarray(img, mode="RGB").save(out / name, optimize=False)
