"""Report figures: each function draws arrays or tables it is given and writes one file.

Nothing here computes a result: callers pass the numbers (design matrices, masks, scores, images,
metric tables) and get back the path of the written figure. Figures are drawn on
:class:`matplotlib.figure.Figure` objects directly, so no pyplot state or interactive backend is used.
SVG output draws text as paths (self-contained, no fonts needed) and is byte-for-byte reproducible;
the text of every label is kept as an XML comment, which is what the tests look for.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = [
    "encoding_display",
    "plot_cv_scores",
    "plot_design_matrix",
    "plot_glm_diagnostics",
    "plot_encoding_maps",
    "plot_encoding_rois",
    "plot_metrics",
    "plot_reconstruction_grid",
    "plot_roi_overlay",
]

#: Colour cycle used for ROIs and methods (matplotlib's tab10).
_COLORS: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_IDENTIFICATION = "identification"
_SIMILARITY = "similarity"


# --------------------------------------------------------------------------------------------- helpers
def _save(fig: Figure, out_path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``out_path`` atomically (temporary file + rename) and return the path.

    The format follows the suffix (``.svg``, ``.png``, ``.pdf``). Parent folders are created.
    """
    out = Path(out_path)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in {"svg", "png", "pdf"}:
        raise ValueError(f"out_path must end in .svg, .png or .pdf, got {str(out)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, str | None] = {"Date": None} if fmt == "svg" else {}
    if fmt == "pdf":
        metadata = {"CreationDate": None}
    # a hidden temporary name in the same folder, created with the usual (umask) permissions
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.{threading.get_ident()}.tmp{out.suffix}")
    try:
        with mpl.rc_context({"svg.hashsalt": "bids_recon", "svg.fonttype": "path"}):
            fig.savefig(tmp, format=fmt, metadata=metadata, dpi=fig.dpi)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    """Return ``(n_rows, n_cols)`` of a balanced grid holding ``n`` panels, at most ``max_cols`` wide."""
    n = max(n, 1)
    n_rows = math.ceil(n / max_cols)
    return n_rows, math.ceil(n / n_rows)


def _require_columns(table: pd.DataFrame, required: Sequence[str], name: str) -> None:
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it has {list(table.columns)}")


def _metric_kind(table: pd.DataFrame) -> pd.Series:
    """Kind of each row: the ``kind`` column where given, else inferred from the metric name."""
    inferred = (
        table["metric"].astype(str).str.contains("ident", case=False).map({True: _IDENTIFICATION, False: _SIMILARITY})
    )
    if "kind" not in table.columns:
        return inferred
    kind = table["kind"].astype("string").str.lower()
    return kind.fillna(inferred).astype(str)


def _as_image(img: np.ndarray, what: str) -> np.ndarray:
    """Check an image array and return it ready for ``imshow``.

    Parameters
    ----------
    img : numpy.ndarray, shape (H, W, 3), (H, W, 4) or (H, W)
        float in [0, 1] or uint8 in [0, 255].
    what : str
        Name used in error messages.
    """
    arr = np.asarray(img)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"{what}: expected an (H, W, 3) or (H, W) image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: image contains NaN or infinite values")
    return np.clip(arr, 0.0, 1.0)


# ------------------------------------------------------------------------------------- design matrix
def plot_design_matrix(
    design: pd.DataFrame,
    out_path: str | os.PathLike[str],
    title: str | None = None,
    max_labels: int = 40,
    trial_pattern: str = r"(?i)^(trial|stim|event)",
) -> Path:
    """Draw a design matrix as an image, each column scaled to its maximum absolute value.

    Parameters
    ----------
    design : pandas.DataFrame, shape (n_scans, n_regressors)
        Numeric regressors, one column per regressor; the column names are the labels.
    out_path : path-like
        Output file (``.svg`` recommended).
    title : str, optional
        Figure title; default "Design matrix (n_scans scans x n_regressors regressors)".
    max_labels : int
        At most this many column labels are drawn. Non-trial columns (drift, confounds) are
        labelled first, then every k-th trial column (those whose name matches ``trial_pattern``);
        a label that would overlap one already drawn is left out.
    trial_pattern : str
        Regular expression (``re.search``) recognising single-trial regressors.

    Returns
    -------
    pathlib.Path
        ``out_path``.
    """
    if not isinstance(design, pd.DataFrame) or design.ndim != 2 or design.size == 0:
        raise ValueError("design must be a non-empty (n_scans, n_regressors) DataFrame")
    values = design.to_numpy(dtype=float)
    n_scans, n_reg = values.shape
    scale = np.nanmax(np.abs(values), axis=0)
    scale[~np.isfinite(scale) | (scale == 0)] = 1.0
    shown = values / scale

    names = [str(c) for c in design.columns]
    is_trial = np.array([re.search(trial_pattern, n) is not None for n in names])
    width = float(np.clip(2.5 + 0.12 * n_reg, 6.0, 16.0))
    ticks = _sparse_ticks(is_trial, max_labels, min_gap=math.ceil(n_reg * 0.11 / (width - 2.0)))

    fig = Figure(figsize=(width, 6.5), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap="gray", vmin=-1.0, vmax=1.0)
    ax.set_xticks(ticks)
    ax.set_xticklabels([names[i] for i in ticks], rotation=90, fontsize=7)
    ax.xaxis.tick_top()
    ax.set_ylabel("scan")
    ax.set_title(title or f"Design matrix ({n_scans} scans \u00d7 {n_reg} regressors)")
    n_trial = int(is_trial.sum())
    if 0 < n_trial < n_reg:
        ax.set_xlabel(f"{n_trial} trial regressors, {n_reg - n_trial} other regressors")
    fig.colorbar(im, ax=ax, shrink=0.5, label="value / max |value|")
    return _save(fig, out_path)


def _sparse_ticks(is_trial: np.ndarray, max_labels: int, min_gap: int) -> list[int]:
    """Choose the columns to label: non-trial columns first, then every k-th trial column.

    Parameters
    ----------
    is_trial : numpy.ndarray of bool, shape (n_regressors,)
        Whether each column is a single-trial regressor.
    max_labels : int
        Most labels drawn.
    min_gap : int
        Labelled columns are at least this many columns apart, so that labels do not overlap.
    """
    n_reg = is_trial.size
    min_gap = max(1, min_gap)
    other = np.flatnonzero(~is_trial).tolist()
    trial = np.flatnonzero(is_trial)
    budget = max(1, max_labels - len(other))
    step = max(1, math.ceil(len(trial) / budget), min_gap)
    candidates = other + trial[::step].tolist()
    if n_reg <= max_labels:
        candidates = list(range(n_reg))
    chosen: list[int] = []
    for col in candidates:
        if len(chosen) >= max_labels:
            break
        if all(abs(col - c) >= min_gap for c in chosen):
            chosen.append(col)
    return sorted(chosen)


# --------------------------------------------------------------------------------------- ROI overlay
def _load_canonical(path: str | os.PathLike[str], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a NIfTI in RAS+ orientation; return ``(data, affine)``, data 3D float."""
    try:
        img = nib.as_closest_canonical(nib.load(os.fspath(path)))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise ValueError(f"{what}: cannot read NIfTI {os.fspath(path)!r}: {exc}") from exc
    data = np.asanyarray(img.dataobj).astype(np.float32)
    if data.ndim == 4:
        data = data.mean(axis=3)
    if data.ndim != 3:
        raise ValueError(f"{what}: expected a 3D image, {os.fspath(path)!r} has shape {data.shape}")
    return data, img.affine


def plot_roi_overlay(
    boldref_path: str | os.PathLike[str],
    roi_masks: Mapping[str, str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    n_slices: int = 12,
    title: str | None = None,
) -> Path:
    """Draw ROI masks over axial slices of a reference BOLD image.

    Parameters
    ----------
    boldref_path : path-like
        3D NIfTI, shape (X, Y, Z) (a 4D image is averaged over time).
    roi_masks : mapping of str to path-like
        ROI name -> 3D NIfTI mask on the same grid (shape and affine) as the boldref; voxels > 0 are
        in the ROI.
    out_path : path-like
        Output file (``.svg`` recommended).
    n_slices : int
        Number of axial slices, evenly spread over the slices that contain any ROI voxel (over the
        whole volume when the masks are empty).
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    ValueError
        If an image cannot be read, or a mask is not on the boldref's grid.
    """
    ref, ref_affine = _load_canonical(boldref_path, "boldref_path")
    masks: dict[str, np.ndarray] = {}
    for name, path in roi_masks.items():
        data, affine = _load_canonical(path, f"roi_masks[{name!r}]")
        if data.shape != ref.shape or not np.allclose(affine, ref_affine, atol=1e-3):
            raise ValueError(
                f"roi_masks[{name!r}]: mask {os.fspath(path)!r} (shape {data.shape}) is not on the grid of "
                f"boldref {os.fspath(boldref_path)!r} (shape {ref.shape}); resample it first"
            )
        masks[name] = data > 0

    union = np.zeros(ref.shape, dtype=bool)
    for m in masks.values():
        union |= m
    z_any = np.flatnonzero(union.any(axis=(0, 1)))
    lo, hi = (int(z_any[0]), int(z_any[-1])) if z_any.size else (0, ref.shape[2] - 1)
    n_show = max(1, min(n_slices, hi - lo + 1))
    z_list = np.unique(np.round(np.linspace(lo, hi, n_show)).astype(int))

    finite = ref[np.isfinite(ref)]
    vmin, vmax = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1.0

    n_rows, n_cols = _grid(len(z_list), 6)
    aspect = ref.shape[1] / max(ref.shape[0], 1)
    panel = 2.0
    fig = Figure(figsize=(panel * n_cols, panel * aspect * n_rows + 1.2), layout="constrained")
    fig.patch.set_facecolor("black")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    colors = {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(masks)}
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, z in zip(axes.ravel(), z_list, strict=False):
        ax.imshow(ref[:, :, z].T, origin="lower", cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        for name, mask in masks.items():
            sl = mask[:, :, z].T
            if not sl.any():
                continue
            fill = np.ma.masked_where(~sl, sl.astype(float))
            ax.imshow(
                fill,
                origin="lower",
                cmap=ListedColormap([colors[name]]),
                alpha=0.35,
                interpolation="nearest",
                vmin=0,
                vmax=1,
            )
            padded = np.pad(sl.astype(float), 1)
            ax.contour(
                np.arange(-1, sl.shape[1] + 1),
                np.arange(-1, sl.shape[0] + 1),
                padded,
                levels=[0.5],
                colors=[colors[name]],
                linewidths=1.0,
            )
        ax.set_xlim(-0.5, ref.shape[0] - 0.5)
        ax.set_ylim(-0.5, ref.shape[1] - 0.5)
        ax.text(0.03, 0.97, f"z={z}", transform=ax.transAxes, color="white", fontsize=8, va="top")
    handles = [
        Patch(facecolor=colors[name], edgecolor=colors[name], alpha=0.8, label=f"{name} ({int(m.sum())} voxels)")
        for name, m in masks.items()
    ]
    if handles:
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(len(handles), 4),
            facecolor="black",
            edgecolor="gray",
            labelcolor="white",
            fontsize=9,
        )
    fig.suptitle(title or "Regions of interest on the reference BOLD image", color="white")
    return _save(fig, out_path)


# ----------------------------------------------------------------------------------------- CV scores
def plot_cv_scores(
    scores: Mapping[str, np.ndarray],
    out_path: str | os.PathLike[str],
    chance: float | None = 0.0,
    xlabel: str = "cross-validated R\u00b2",
    alphas: Mapping[str, np.ndarray] | None = None,
    title: str | None = None,
    bins: int = 50,
) -> Path:
    """Draw, per decoder, the distribution over targets of its cross-validated score.

    Parameters
    ----------
    scores : mapping of str to numpy.ndarray, each shape (n_targets,)
        Decoder name -> one score per target (NaNs are dropped and counted in the legend).
    out_path : path-like
        Output file (``.svg`` recommended).
    chance : float or None
        Chance level drawn as a dashed vertical line; None draws none.
    xlabel : str
        Label of the score axis.
    alphas : mapping of str to numpy.ndarray, each shape (n_targets,), optional
        Decoder name -> regularisation chosen per target; drawn as a second panel (log x axis).
    title : str, optional
        Figure title.
    bins : int
        Number of histogram bins.

    Returns
    -------
    pathlib.Path
        ``out_path``.
    """
    if not scores:
        raise ValueError("scores is empty: give at least one decoder's scores")
    clean: dict[str, np.ndarray] = {}
    n_dropped: dict[str, int] = {}
    for name, values in scores.items():
        arr = np.asarray(values, dtype=float).ravel()
        clean[name] = arr[np.isfinite(arr)]
        n_dropped[name] = int(arr.size - clean[name].size)
    pooled = np.concatenate([v for v in clean.values()] + [np.zeros(0)])
    lo, hi = (float(pooled.min()), float(pooled.max())) if pooled.size else (-1.0, 1.0)
    if chance is not None:
        lo, hi = min(lo, chance), max(hi, chance)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    n_panels = 2 if alphas else 1
    fig = Figure(figsize=(6.0 * n_panels, 4.0), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    ax = axes[0]
    for i, (name, arr) in enumerate(clean.items()):
        med = f"{np.median(arr):.3g}" if arr.size else "n/a"
        label = f"{name} (n={arr.size}, median={med})"
        if n_dropped[name]:
            label += f", {n_dropped[name]} NaN"
        if arr.size:
            ax.hist(arr, bins=edges, histtype="stepfilled", alpha=0.25, color=_COLORS[i % len(_COLORS)])
        ax.hist(arr, bins=edges, histtype="step", linewidth=1.5, color=_COLORS[i % len(_COLORS)], label=label)
    if chance is not None:
        ax.axvline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:g})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("number of targets")
    ax.set_title("Score per target")
    ax.legend(fontsize=8)

    if alphas:
        ax = axes[1]
        arrays = {k: np.asarray(v, dtype=float).ravel() for k, v in alphas.items()}
        arrays = {k: v[np.isfinite(v) & (v > 0)] for k, v in arrays.items()}
        pooled_a = np.concatenate([v for v in arrays.values()] + [np.zeros(0)])
        a_lo, a_hi = (pooled_a.min(), pooled_a.max()) if pooled_a.size else (1.0, 10.0)
        a_edges = np.logspace(np.log10(a_lo) - 0.25, np.log10(a_hi) + 0.25, 31)
        for i, (name, arr) in enumerate(arrays.items()):
            ax.hist(arr, bins=a_edges, histtype="step", linewidth=1.5, color=_COLORS[i % len(_COLORS)], label=name)
        ax.set_xscale("log")
        ax.set_xlabel("chosen regularisation \u03b1")
        ax.set_ylabel("number of targets")
        ax.set_title("Regularisation per target")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, out_path)


# ------------------------------------------------------------------------------- reconstruction grid
def plot_reconstruction_grid(
    seen: Sequence[np.ndarray],
    reconstructed: Mapping[str, Sequence[np.ndarray]],
    labels: Sequence[str],
    out_path: str | os.PathLike[str],
    max_items: int = 30,
    items_per_row: int = 10,
    cell_inches: float = 1.3,
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Draw seen images above their reconstructions, one column per stimulus.

    Stimuli are laid out in blocks of ``items_per_row`` columns; each block has one row of seen
    images followed by one row per method.

    Parameters
    ----------
    seen : sequence of numpy.ndarray, each shape (H, W, 3) or (H, W)
        Seen images, float in [0, 1] or uint8.
    reconstructed : mapping of str to sequence of numpy.ndarray
        Method name -> reconstructions, aligned with ``seen`` (same length); image sizes may differ
        from the seen images.
    labels : sequence of str
        One label per stimulus (e.g. the stimulus id), drawn above the seen image.
    out_path : path-like
        Output file (``.png`` recommended; images are raster data).
    max_items : int
        Only the first ``max_items`` stimuli are drawn.
    items_per_row : int
        Most stimuli per block of rows (blocks are balanced: 12 stimuli at 10 per row give two
        blocks of 6).
    cell_inches : float
        Size of one image cell in inches.
    dpi : int
        Resolution of the PNG.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``out_path``.
    """
    n_items = len(seen)
    if n_items == 0:
        raise ValueError("seen is empty: nothing to draw")
    if len(labels) != n_items:
        raise ValueError(f"labels has {len(labels)} entries but seen has {n_items}")
    for method, images in reconstructed.items():
        if len(images) != n_items:
            raise ValueError(f"reconstructed[{method!r}] has {len(images)} images but seen has {n_items}")
    n_show = min(n_items, max_items)
    n_blocks = math.ceil(n_show / max(1, items_per_row))
    n_cols = math.ceil(n_show / n_blocks)  # balanced blocks: 12 items at 10 per row -> 2 x 6
    rows_per_block = 1 + len(reconstructed)
    n_rows = n_blocks * rows_per_block

    label_w = 0.9  # inches reserved for row labels
    title_h = 0.5 if title or n_show < n_items else 0.0
    fig = Figure(
        figsize=(label_w + n_cols * cell_inches, title_h + n_rows * (cell_inches + 0.25)),
        dpi=dpi,
    )
    gs = fig.add_gridspec(
        n_rows,
        n_cols,
        left=label_w / fig.get_figwidth(),
        right=0.99,
        top=1.0 - (title_h + 0.05) / fig.get_figheight(),
        bottom=0.01,
        wspace=0.05,
        hspace=0.25,
    )
    row_names = ["seen", *reconstructed.keys()]
    for b in range(n_blocks):
        for r, row_name in enumerate(row_names):
            row = b * rows_per_block + r
            for c in range(n_cols):
                item = b * n_cols + c
                if item >= n_show:
                    continue
                ax = fig.add_subplot(gs[row, c])
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if r == 0:
                    img = _as_image(seen[item], f"seen[{item}]")
                    ax.set_title(str(labels[item]), fontsize=8)
                else:
                    img = _as_image(reconstructed[row_name][item], f"reconstructed[{row_name!r}][{item}]")
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="antialiased")
                if c == 0:
                    ax.set_ylabel(row_name, fontsize=9, rotation=0, ha="right", va="center")
    heading = title or ""
    if n_show < n_items:
        heading = f"{heading} (first {n_show} of {n_items} stimuli)".strip()
    if heading:
        fig.suptitle(heading, fontsize=10, y=1.0 - 0.05 / fig.get_figheight(), va="top")
    return _save(fig, out_path)


# ------------------------------------------------------------------------------------------- metrics
def write_contact_sheet(
    seen: Sequence[np.ndarray],
    reconstructed: Mapping[str, Sequence[str | os.PathLike[str]]],
    labels: Sequence[str],
    out_path: str | os.PathLike[str],
    thumb: int = 64,
    columns: int = 10,
    quality: int = 80,
) -> Path:
    """One page of thumbnails: for every stimulus its seen image above one thumbnail per method (JPEG).

    Drawn with Pillow, not matplotlib: a report pages through every test stimulus (NSD: 982 x 4 thumbnails) in a
    few seconds and a few MB, while the full-size reconstructions stay files of their own.

    Parameters
    ----------
    seen : sequence of numpy.ndarray, each shape (H, W, 3)
        Seen images, float in [0, 1] or uint8, any size (resized to ``thumb``).
    reconstructed : mapping of str to sequence of path-like
        Method name -> reconstruction files (PNG), aligned with ``seen``.
    labels : sequence of str
        One label per stimulus, written above its column.
    out_path : path-like
        Output ``.jpg`` file.
    thumb : int
        Thumbnail size (px).
    columns : int
        Stimuli per row of the page.
    quality : int
        JPEG quality.

    Returns
    -------
    pathlib.Path
        ``out_path``.
    """
    from PIL import Image, ImageDraw

    n = len(seen)
    if n == 0 or any(len(files) != n for files in reconstructed.values()) or len(labels) != n:
        raise ValueError(f"write_contact_sheet: {n} seen images, {len(labels)} labels and "
                         f"{[len(f) for f in reconstructed.values()]} reconstructions per method must all agree")
    rows_per_item = 1 + len(reconstructed)
    label_h, gap, left = 12, 6, 48
    cols = min(columns, n)
    block_h = label_h + rows_per_item * thumb + gap
    sheet = Image.new("RGB", (left + cols * (thumb + 2), math.ceil(n / cols) * block_h), "white")
    draw = ImageDraw.Draw(sheet)
    names = ["seen", *reconstructed]
    for i in range(n):
        x0 = left + (i % cols) * (thumb + 2)
        y0 = (i // cols) * block_h
        if i % cols == 0:
            for r, name in enumerate(names):
                draw.text((2, y0 + label_h + r * thumb + thumb // 2 - 5), name[:8], fill="black")
        draw.text((x0, y0), str(labels[i])[: max(1, thumb // 6)], fill="black")
        image = np.asarray(seen[i])
        if image.dtype != np.uint8:
            image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        tiles = [Image.fromarray(image).convert("RGB")]
        tiles += [Image.open(files[i]).convert("RGB") for files in reconstructed.values()]
        for r, tile in enumerate(tiles):
            sheet.paste(tile.resize((thumb, thumb), Image.BILINEAR), (x0, y0 + label_h + r * thumb))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    sheet.save(tmp, format="JPEG", quality=quality)
    os.replace(tmp, out)
    return out


def _draw_chance(ax, x: np.ndarray, chance: np.ndarray, width: float) -> None:
    """Dashed chance line: across the panel when one value, else one segment per bar."""
    finite = chance[np.isfinite(chance)]
    if finite.size == 0:
        return
    if np.allclose(finite, finite[0]):
        ax.axhline(finite[0], color="black", linestyle="--", linewidth=1, label="chance")
    else:
        ok = np.isfinite(chance)
        ax.hlines(chance[ok], x[ok] - width / 2, x[ok] + width / 2, colors="black", linestyles="--", label="chance")


def _metric_axis(ax, pct: bool) -> None:
    """Y label and limits of one metric panel (identification in %)."""
    ax.set_ylabel("% correct" if pct else "value")
    if pct:
        ax.set_ylim(0, 105)
    ax.margins(y=0.15)


def _finish_metric_figure(fig: Figure, axes: np.ndarray, title: str | None, out_path: str | os.PathLike[str]) -> Path:
    """One 'chance' legend entry, the title, and save."""
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles[:1], labels[:1], loc="outside lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, out_path)


def _value_bars(ax, rows: pd.DataFrame, factor: float, pct: bool, colors: Mapping[str, str]) -> list[str]:
    """One participant's panel: a bar per row (method) with its CI where given, its value written above; returns
    the bars' labels."""
    has_ci = {"ci_low", "ci_high"} <= set(rows.columns)
    x = np.arange(len(rows), dtype=float)
    values = rows["value"].to_numpy(dtype=float) * factor
    row_methods = rows["method"].astype(str).tolist()
    ax.bar(x, values, width=0.7, color=[colors[m] for m in row_methods])
    if has_ci:
        lo = rows["ci_low"].to_numpy(dtype=float) * factor
        hi = rows["ci_high"].to_numpy(dtype=float) * factor
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            err = np.vstack([values[ok] - lo[ok], hi[ok] - values[ok]]).clip(min=0)
            ax.errorbar(x[ok], values[ok], yerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
    _draw_chance(ax, x, rows["chance"].to_numpy(dtype=float) * factor, 0.7)
    tops = values.copy()
    if has_ci:
        tops = np.fmax(tops, rows["ci_high"].to_numpy(dtype=float) * factor)
    for xi, v, top in zip(x, values, tops, strict=True):
        if np.isfinite(v):
            ax.annotate(
                f"{v:.1f}" if pct else f"{v:.3g}",
                (xi, top),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    return row_methods


def _participant_bars(ax, rows: pd.DataFrame, factor: float, methods: Sequence[str], colors: Mapping[str, str],
                      offsets: Mapping[str, float]) -> list[str]:
    """A group's panel: a dot per participant, the mean across participants as a bar per method, the chance level
    (mean) dashed; returns the bars' labels."""
    present = [m for m in methods if (rows["method"].astype(str) == m).any()]
    x = np.arange(len(present), dtype=float)
    means, chances = [], []
    for xi, method in zip(x, present, strict=True):
        sub = rows[rows["method"].astype(str) == method]
        vals = sub["value"].to_numpy(dtype=float) * factor
        means.append(np.nanmean(vals) if np.isfinite(vals).any() else np.nan)
        ch = sub["chance"].to_numpy(dtype=float)
        chances.append(np.nanmean(ch) * factor if np.isfinite(ch).any() else np.nan)
        jitter = np.array([offsets[p] for p in sub["participant_id"].astype(str)])
        ax.scatter(xi + jitter, vals, s=16, color="black", zorder=3, linewidths=0)
    ax.bar(x, means, width=0.7, color=[colors[m] for m in present], alpha=0.6)
    _draw_chance(ax, x, np.asarray(chances, dtype=float), 0.7)
    return present


def plot_metrics(
    metrics: pd.DataFrame,
    out_path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Draw one bar panel per metric, one bar per method, with the chance level dashed: one participant's values,
    or a group's (a ``participant_id`` column): a dot per participant and their mean as the bar.

    Parameters
    ----------
    metrics : pandas.DataFrame
        One row per (metric, method) with columns ``metric``, ``value``, ``chance``, ``method`` and
        optionally ``kind`` ("identification" or "similarity"; inferred from the metric name when
        absent: names containing "ident" are identification), ``ci_low``, ``ci_high``; for a group, one row per
        (participant, metric, method) with a ``participant_id`` column (each panel's title then gives the number of
        participants; CI columns are not drawn). Identification values are fractions in [0, 1] and are drawn in %;
        similarity values (PixCorr, SSIM, ...) are drawn in their own units.
    out_path : path-like
        Output file (``.svg`` recommended).
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``out_path``.
    """
    group = "participant_id" in metrics.columns
    _require_columns(metrics, ["participant_id"] * group + ["metric", "value", "chance", "method"], "metrics")
    if metrics.empty:
        raise ValueError("metrics is empty: nothing to draw")
    table = metrics.copy()
    table["kind"] = _metric_kind(table)
    metric_names = list(dict.fromkeys(table["metric"].astype(str)))
    methods = list(dict.fromkeys(table["method"].astype(str)))
    colors = {m: _COLORS[i % len(_COLORS)] for i, m in enumerate(methods)}
    participants = list(dict.fromkeys(table["participant_id"].astype(str))) if group else []
    # deterministic horizontal jitter so dots of different participants do not overlap
    offsets = {
        p: (i - (len(participants) - 1) / 2) * min(0.5 / max(len(participants), 1), 0.08)
        for i, p in enumerate(participants)
    }

    n_rows, n_cols = _grid(len(metric_names), 4)
    fig = Figure(figsize=(1.2 + (0.55 * len(methods) + 1.6) * n_cols, 3.4 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.ravel()[len(metric_names) :]:
        ax.set_axis_off()
    for ax, name in zip(axes.ravel(), metric_names, strict=False):
        rows = table[table["metric"].astype(str) == name]
        pct = (rows["kind"] == _IDENTIFICATION).all()
        factor = 100.0 if pct else 1.0
        if group:
            labels = _participant_bars(ax, rows, factor, methods, colors, offsets)
            heading = f"{name} (n={rows['participant_id'].nunique()})"
        else:
            labels, heading = _value_bars(ax, rows, factor, pct, colors), name
        ax.set_xticks(np.arange(len(labels), dtype=float))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(heading, fontsize=10)
        _metric_axis(ax, pct)
    return _finish_metric_figure(fig, axes, title, out_path)


def plot_map_mosaic(
    maps: Mapping[str, str | os.PathLike[str]],
    mask_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    n_slices: int = 8,
    cmaps: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw one row of axial slices per 3D map (same grid as the mask), with a colour bar each.

    Parameters
    ----------
    maps : mapping
        Row label -> NIfTI map.
    mask_path : path-like
        Brain mask: voxels outside it are blank; slices are spread over its extent.
    cmaps : mapping, optional
        Row label -> matplotlib colormap name (default ``viridis``).
    """
    mask, _ = _load_canonical(mask_path, "mask")
    inside = mask > 0
    z_any = np.flatnonzero(inside.any(axis=(0, 1)))
    if len(z_any) == 0:
        raise ValueError(f"mask {os.fspath(mask_path)!r} is empty")
    slices = np.unique(np.linspace(z_any[0], z_any[-1], min(n_slices, len(z_any))).round().astype(int))
    fig = Figure(figsize=(1.4 * len(slices) + 1.2, 1.6 * len(maps) + 0.4))
    grid = fig.add_gridspec(len(maps), len(slices) + 1, width_ratios=[1] * len(slices) + [0.12])
    for row, (label, path) in enumerate(maps.items()):
        data, _ = _load_canonical(path, label)
        if data.shape != mask.shape:
            raise ValueError(f"{label}: map {os.fspath(path)!r} has shape {data.shape}, mask {mask.shape}")
        values = data[inside]
        finite = values[np.isfinite(values)]
        vmin, vmax = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        vmax = vmax if vmax > vmin else vmin + 1.0
        shown = np.where(inside, data, np.nan)
        image = None
        for col, z in enumerate(slices):
            ax = fig.add_subplot(grid[row, col])
            image = ax.imshow(np.rot90(shown[:, :, z]), cmap=(cmaps or {}).get(label, "viridis"), vmin=vmin,
                              vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_facecolor("black")
            if col == 0:
                ax.set_ylabel(label, fontsize=9)
        cax = fig.add_subplot(grid[row, -1])
        fig.colorbar(image, cax=cax)
    if title:
        fig.suptitle(title)
    return _save(fig, out_path)


def plot_glm_diagnostics(
    info: Mapping[str, object],
    out_path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Draw a session's GLM choices: CV curves over noise components and ridge fractions, HRF-index histogram.

    Parameters
    ----------
    info : mapping
        The session's fit information as the beta stage writes it (``SessionFit.info``, e.g. the
        ``..._stat-rsquare_statmap.json`` sidecar). Keys used when present: ``CVNoiseComponents`` (median CV R² per
        count: of held-out runs' time series when ``CVNoiseGains`` is there, else of repeats), ``NoiseComponents``,
        ``NoiseComponentsParallelAnalysis``, ``NoiseSelection``; ``Fractions``,
        ``CVFractions``, ``CVChosenRidge``, ``FractionMedianTaskVoxels``, ``FractionSelection``;
        ``HRFIndexHistogram``, ``HRFIndexHistogramTaskVoxels``, ``HRFTimeToPeak``. Missing curves are drawn as
        a "not run" panel.
    out_path : path-like
        Output file (``.svg`` recommended).
    title : str, optional

    Returns
    -------
    pathlib.Path
        ``out_path``.
    """
    fig = Figure(figsize=(13.0, 3.6), layout="constrained")
    ax_noise, ax_frac, ax_hrf = fig.subplots(1, 3)

    def not_run(ax, what: str) -> None:
        ax.text(0.5, 0.5, f"{what}: not run", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])

    def label(ax, xlabel: str, ylabel: str) -> None:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)

    curve = info.get("CVNoiseComponents")
    chosen = info.get("NoiseComponents")
    if curve:
        counts = np.arange(len(curve))
        heldout = "CVNoiseGains" in info  # held-out runs' time series, not repeats
        ax_noise.plot(counts, curve, "o-", color=_COLORS[0],
                      label="median R\u00b2 of held-out runs (on/off model)" if heldout
                      else "median CV R\u00b2 of repeats (task voxels)")
        ax_noise.axhline(0.0, color="black", linewidth=0.8, linestyle=":")
        if chosen is not None:
            ax_noise.axvline(float(chosen), color=_COLORS[3], linestyle="--",
                             label=f"chosen: {chosen} ({info.get('NoiseSelection', 'n/a')})")
        parallel = info.get("NoiseComponentsParallelAnalysis")
        if parallel is not None and parallel != chosen:
            ax_noise.axvline(float(parallel), color=_COLORS[2], linestyle=":", label=f"parallel analysis: {parallel}")
        ax_noise.set_xticks(counts)
        label(ax_noise, "number of noise components", "cross-validated R\u00b2")
    elif chosen is not None and info.get("NoiseSelection"):
        not_run(ax_noise, f"noise CV ({chosen} components by {info.get('NoiseSelection')})")
    else:
        not_run(ax_noise, "noise components")
    ax_noise.set_title("Noise components", fontsize=10)

    curve = info.get("CVFractions")
    fractions = info.get("Fractions")
    if curve and fractions and len(fractions) == len(curve):
        ax_frac.plot(fractions, curve, "o-", color=_COLORS[0], markersize=3, label="one fraction for all voxels")
        ax_frac.axhline(0.0, color="black", linewidth=0.8, linestyle=":")
        chosen_score = info.get("CVChosenRidge")
        if chosen_score is not None:
            ax_frac.axhline(float(chosen_score), color=_COLORS[3], linestyle="--",
                            label=f"chosen per voxel ({info.get('FractionSelection', 'n/a')})")
        median = info.get("FractionMedianTaskVoxels")
        if median is not None:
            ax_frac.axvline(float(median), color=_COLORS[2], linestyle=":", label=f"median chosen: {float(median):.2f}")
        ax_frac.set_xlim(1.02, 0.0)
        label(ax_frac, "ridge fraction of the least-squares norm", "cross-validated R\u00b2")
    else:
        not_run(ax_frac, "ridge CV")
    ax_frac.set_title("Ridge regularisation", fontsize=10)

    histogram = info.get("HRFIndexHistogram")
    if histogram and len(histogram) > 1:
        index = np.arange(len(histogram))
        total = np.asarray(histogram, dtype=float)
        ax_hrf.bar(index - 0.2, total / max(total.sum(), 1.0), width=0.4, color=_COLORS[7], label="all voxels")
        task = info.get("HRFIndexHistogramTaskVoxels")
        if task:
            task = np.asarray(task, dtype=float)
            ax_hrf.bar(index + 0.2, task / max(task.sum(), 1.0), width=0.4, color=_COLORS[1], label="task voxels")
        peaks = info.get("HRFTimeToPeak")
        step = max(1, len(histogram) // 10)
        ax_hrf.set_xticks(index[::step])
        if peaks and len(peaks) == len(histogram):
            ax_hrf.set_xticklabels([f"{i}\n{float(peaks[i]):.1f}s" for i in index[::step]], fontsize=7)
        label(ax_hrf, "HRF index (time to peak)", "fraction of voxels")
    else:
        not_run(ax_hrf, "HRF library")
    ax_hrf.set_title("Chosen HRFs", fontsize=10)
    if title:
        fig.suptitle(title)
    return _save(fig, out_path)


# ------------------------------------------------------------------------------------- encoding maps
#: Views of each hemisphere on the cortical surface (visual cortex is posterior, medial and ventral).
_SURFACE_VIEWS = (("left", "lateral"), ("left", "medial"), ("right", "medial"), ("right", "lateral"),
                  ("left", "ventral"), ("right", "ventral"))
#: Smallest fraction of fsaverage5 vertices inside the brain mask for the surface display.
SURFACE_MIN_COVERAGE = 0.8


def _fsaverage():
    """nilearn's bundled fsaverage5 meshes (shipped with nilearn: nothing is downloaded)."""
    from nilearn import datasets

    return datasets.fetch_surf_fsaverage("fsaverage5")


def encoding_display(mask_path: str | os.PathLike[str], space: str | None) -> str:
    """How :func:`plot_encoding_maps` shows maps in this grid: ``"surface"`` or ``"slices"``.

    The surface (nilearn's bundled fsaverage5, maps projected from the volume) is used for a map in an MNI
    space whose brain mask covers at least :data:`SURFACE_MIN_COVERAGE` of the surface's vertices; otherwise
    (another space, a partial field of view, a synthetic brain) axial slices.
    """
    if not space or not str(space).upper().startswith("MNI"):
        return "slices"
    try:
        from nilearn import surface

        meshes = _fsaverage()
        img = nib.load(os.fspath(mask_path))
        inside = nib.Nifti1Image((np.asarray(img.dataobj) > 0).astype(np.float32), img.affine)
        covered = [surface.vol_to_surf(inside, meshes[f"pial_{h}"], interpolation="nearest_most_frequent")
                   for h in ("left", "right")]
    except Exception:  # no bundled meshes, an older nilearn: slices work everywhere
        return "slices"
    return "surface" if float(np.mean(np.concatenate(covered) > 0.5)) >= SURFACE_MIN_COVERAGE else "slices"


def _map_scale(data: Mapping[str, np.ndarray], vmax: float | None) -> float:
    if vmax is not None:
        return float(vmax)
    pooled = np.concatenate([v[np.isfinite(v)].ravel() for v in data.values()] + [np.zeros(1)])
    top = float(np.percentile(np.abs(pooled), 99)) if pooled.size > 1 else 1.0
    return top if top > 0 else 1.0


def plot_encoding_maps(
    maps: Mapping[str, str | os.PathLike[str]],
    mask_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    significance: Mapping[str, str | os.PathLike[str]] | None = None,
    q_threshold: float = 0.05,
    vmax: float | None = None,
    display: str = "slices",
    cmap: str = "hot",
    colorbar_label: str = "r",
    n_slices: int = 8,
    title: str | None = None,
) -> Path:
    """Draw encoding maps (one row each) with one colour scale for all of them, positive values only.

    Parameters
    ----------
    maps : mapping of str to path-like
        Row label -> 3D NIfTI map (NaN = not modelled).
    mask_path : path-like
        Brain mask of the maps' grid (the slices' background and extent).
    out_path : path-like
        Output file (``.png`` recommended: surfaces are many polygons).
    significance : mapping of str to path-like, optional
        Row label -> q map; voxels with ``q >= q_threshold`` are not coloured.
    vmax : float, optional
        Top of the common colour scale (default: the 99th percentile of the shown values).
    display : {"slices", "surface"}
        Axial slices, or nilearn's fsaverage5 surface (maps projected from the volume; see
        :func:`encoding_display`).
    cmap, colorbar_label : str
        Colour map and the colour bar's label.
    """
    if not maps:
        raise ValueError("maps is empty: give at least one map")
    if display not in ("slices", "surface"):
        raise ValueError(f"display must be 'slices' or 'surface', got {display!r}")
    mask, _ = _load_canonical(mask_path, "mask")
    data = {}
    modelled = np.zeros(mask.shape, dtype=bool)
    for label, path in maps.items():
        values, _ = _load_canonical(path, label)
        if values.shape != mask.shape:
            raise ValueError(f"{label}: map {os.fspath(path)!r} has shape {values.shape}, mask {mask.shape}")
        modelled |= np.isfinite(values)
        if significance and label in significance:
            q, _ = _load_canonical(significance[label], f"{label} q")
            values = np.where(q < q_threshold, values, np.nan)
        data[label] = np.where(values > 0, values, np.nan)
    top = _map_scale(data, vmax)
    norm = mpl.colors.Normalize(vmin=0.0, vmax=top)
    if display == "surface":
        fig = _surface_rows(maps, data, norm, cmap)
    else:
        fig = _slice_rows(data, mask, modelled if modelled.any() else mask > 0, norm, cmap, n_slices)
    cax = fig.add_axes((0.93, 0.15, 0.015, 0.7))
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax, label=colorbar_label)
    if title:
        fig.suptitle(title)
    return _save(fig, out_path)


def _slice_rows(data: Mapping[str, np.ndarray], mask: np.ndarray, extent: np.ndarray, norm, cmap: str,
                n_slices: int) -> Figure:
    """Axial slices spread over ``extent`` (the modelled voxels), the brain mask in grey behind the maps."""
    inside = mask > 0
    z_any = np.flatnonzero(extent.any(axis=(0, 1)))
    if len(z_any) == 0:
        raise ValueError("the mask is empty")
    slices = np.unique(np.linspace(z_any[0], z_any[-1], min(n_slices, len(z_any))).round().astype(int))
    fig = Figure(figsize=(1.3 * len(slices) + 1.4, 1.5 * len(data) + 0.5))
    fig.subplots_adjust(left=0.06, right=0.9, top=0.9, bottom=0.04, wspace=0.04, hspace=0.08)
    background = np.where(inside, 0.35, 0.0)
    for row, (label, values) in enumerate(data.items()):
        for col, z in enumerate(slices):
            ax = fig.add_subplot(len(data), len(slices), row * len(slices) + col + 1)
            ax.imshow(np.rot90(background[:, :, z]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.imshow(np.rot90(values[:, :, z]), cmap=cmap, norm=norm, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_facecolor("black")
            if col == 0:
                ax.set_ylabel(label, fontsize=9)
    return fig


def _surface_rows(maps: Mapping[str, str | os.PathLike[str]], data: Mapping[str, np.ndarray], norm,
                  cmap: str) -> Figure:
    from nilearn import plotting, surface

    meshes = _fsaverage()
    n_cols = len(_SURFACE_VIEWS)
    fig = Figure(figsize=(2.0 * n_cols + 1.0, 1.9 * len(data) + 0.7))
    fig.subplots_adjust(left=0.04, right=0.9, top=0.86, bottom=0.02, wspace=0.0, hspace=0.05)
    for row, (label, values) in enumerate(data.items()):
        img = nib.as_closest_canonical(nib.load(os.fspath(maps[label])))
        shown = nib.Nifti1Image(np.nan_to_num(values, nan=0.0).astype(np.float32), img.affine)
        textures = {h: surface.vol_to_surf(shown, meshes[f"pial_{h}"]) for h in ("left", "right")}
        for col, (hemi, view) in enumerate(_SURFACE_VIEWS):
            ax = fig.add_subplot(len(data), n_cols, row * n_cols + col + 1, projection="3d")
            plotting.plot_surf_stat_map(meshes[f"infl_{hemi}"], np.nan_to_num(textures[hemi]), hemi=hemi, view=view,
                                        bg_map=meshes[f"sulc_{hemi}"], axes=ax, figure=fig, colorbar=False,
                                        cmap=cmap, vmin=0.0, vmax=norm.vmax, threshold=1e-6, symmetric_cbar=False)
            ax.set_box_aspect(None, zoom=1.35)
            if row == 0:
                ax.set_title(f"{hemi} {view}", fontsize=8)
            if col == 0:
                ax.text2D(-0.05, 0.5, label, transform=ax.transAxes, rotation=90, va="center", fontsize=9)
    return fig


def plot_encoding_rois(table: pd.DataFrame, out_path: str | os.PathLike[str], value: str = "mean_r",
                       title: str | None = None) -> Path:
    """Bars of an encoding score per ROI (groups) and model (colours), with the fraction of significant voxels.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`bids_recon.decoding.encoding.roi_summary` rows: ``roi``, ``model``, ``value`` and
        ``fraction_significant``.
    value : str
        Column drawn as bar heights (``mean_r`` or ``median_r``).
    """
    _require_columns(table, ["roi", "model", value, "fraction_significant"], "encoding ROI table")
    rois = list(dict.fromkeys(table["roi"]))
    models = list(dict.fromkeys(table["model"]))
    width = 0.8 / max(len(models), 1)
    fig = Figure(figsize=(1.6 + 0.5 * len(rois) * len(models), 3.8), layout="constrained")
    ax = fig.subplots()
    for k, model in enumerate(models):
        rows = table[table["model"] == model].set_index("roi").reindex(rois)
        x = np.arange(len(rois)) + (k - (len(models) - 1) / 2) * width
        heights = rows[value].to_numpy(float)
        ax.bar(x, np.nan_to_num(heights), width, color=_COLORS[k % len(_COLORS)], label=model)
        for xi, h, frac in zip(x, heights, rows["fraction_significant"].to_numpy(float), strict=True):
            if np.isfinite(h) and np.isfinite(frac):
                ax.text(xi, max(h, 0) + 0.005, f"{100 * frac:.0f}%", ha="center", va="bottom", fontsize=6)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(rois)))
    ax.set_xticklabels(rois)
    ax.set_ylabel({"mean_r": "mean r (test stimuli)", "median_r": "median r (test stimuli)"}.get(value, value))
    ax.legend(fontsize=8, title="feature space", title_fontsize=8)
    ax.set_title(title or "Encoding accuracy per ROI (labels: % of voxels significant)", fontsize=10)
    return _save(fig, out_path)
