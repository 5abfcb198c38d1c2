r"""NSD-synthetic and NSD-Imagery for the subjects of the multi-subject simulation (``--experiments``).

:func:`write_experiments` writes, on top of a multi-subject NSD stand-in root
(:func:`bids_recon.sim.multisubject.write_nsd_multisubject`), each experiment for every subject through the
stand-in writers of :mod:`bids_recon.sim.nsdexperiments`, with betas from the **same** subjects' generative model
(:meth:`~bids_recon.sim.multisubject.MultiSubjectData.respond`): a decoder trained on a subject's core experiment
applies to its betas of these experiments as to NSD's (``--decoders-from``), on images it never saw.

Betas
-----
One extra session (a new day) per experiment and subject: like the core experiment's sessions
(:mod:`bids_recon.sim.multisubject`), beta ``k`` of ROI voxel ``v`` is::

    beta[k, v] = g[v] (evoked_v + gain_k response(image_k)[v] + e[k, v]) + o[v]
    e ~ N(0, noise_sd_v^2),   g = exp(session_scale_sd N(0, 1)),   o ~ N(0, session_offset_sd^2)

with the subject's own ``evoked``, ``noise_sd`` and response weights (``respond(..., single_trial=True)`` gives
``evoked + response + e``; ``gain_k != 1`` takes ``(1 - gain_k) response`` off it); ``gain_k = 0`` (no image:
``evoked + e``). Brain voxels outside the ROIs hold noise of the subject's median noise sd (as the core betas).
Written as % signal change over the brain mask's voxels in C order, as the writers expect.

NSD-synthetic (``nsdsynthetic``)
--------------------------------
Images **out of the core experiment's distribution**, at the simulation's image size, padded left and right to a
wider-than-tall frame (NSD-synthetic's images are not square; the resolver centre-crops them back):

- ``object``: one object of the core categories and colours, ``small object`` (size 0.08-0.18 of the width; the
  core draws 0.2-0.5), ``large object`` (0.55-0.8) or ``off-centre object`` (core sizes, centre 0.06-0.16 from an
  edge, partly out of the frame); responses with the object's attributes (``stim_table``);
- ``noise``: ``white noise`` and ``pink noise`` (1/f) images; ``grating``: sinusoidal gratings (orientation and
  frequency drawn): responses with attributes estimated from the pixels (no category);
- ``colour`` (images 221..): each subject's own recoloured versions of shared object images (another object and
  background colour per subject), as NSD-synthetic's ``nsdsynthetic_colorstimuli_subjNN.hdf5``.

Design (NSD-synthetic's published structure, :data:`SYNTHETIC_RUNS` runs x :data:`SYNTHETIC_TRIALS_PER_RUN`
trials = 744, the same order for everyone): each run :data:`SYNTHETIC_ONEBACK` one-back repeats (a trial showing
the image of the trial before it) and 83 other trials; every image at least once, the others drawn at random;
``stimpattern`` 1 x 8 x 95 (2 blank slots a run). The ``small`` preset has NSD-synthetic's 220 shared + 64 colour
images; ``tiny`` 40 + 8 (numbered 1..40 and 221..228). Image numbers, names and classes also go to
``nsdsyntheticimageinformation.csv`` (``Image``, ``Image subclass``, ``Image class``; rows = images 1..).

NSD-Imagery (``nsdimagery``)
----------------------------
Targets: set A (``H R V L P E``) bars at 0/45/90/135 degrees and crosses at 0/45 (light on a grey background,
drawn here; responses with the category ``bar`` / ``cross`` and position, size and colour estimated from the
pixels); set B (``W K B C D T``) six of the core experiment's **test** images (NSD's set B are shared1000
images), written under their NSD-Imagery file names; set C (words) has no image. Design and behavioural tables:
:func:`~bids_recon.sim.nsdexperiments.imagery_runs` (seeded per subject), 720 betas in
:func:`~bids_recon.sim.nsdexperiments.imagery_beta_rows` order. Gains (the model's choices, not NSD's):

============================  ======================================================
vision trial, set A/B         1 (the target seen)
imagery trial, set A/B        :data:`IMAGERY_GAIN` = 0.3 (weaker; same noise: noisier)
attention cue beta            0 (the cue letter: evoked response only)
attention detection beta      :data:`ATTENTION_GAIN` = 0.5 of the target's response
set C (any condition)         0
============================  ======================================================

Ground truth in ``OUT_groundtruth/nsdsynthetic/`` and ``OUT_groundtruth/nsdimagery/`` (see :func:`write_experiments`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from bids_recon.errors import UsageError
from bids_recon.sim.multisubject import MultiSubjectData, image_attributes
from bids_recon.sim.stimuli import BACKGROUNDS, CATEGORIES, COLOURS, draw_object_mask

#: The experiments ``--experiments`` writes.
EXPERIMENTS = ("nsdsynthetic", "nsdimagery")
#: NSD-synthetic's published structure: runs, stimulus trials a run, one-back repeats a run, blank slots a run.
SYNTHETIC_RUNS = 8
SYNTHETIC_TRIALS_PER_RUN = 93
SYNTHETIC_ONEBACK = 10
SYNTHETIC_BLANKS = 2
#: (shared images, colour images per subject) by multi-subject preset name (NSD-synthetic: 220 + 64).
SYNTHETIC_IMAGES = {"tiny": (40, 8)}
SYNTHETIC_IMAGES_DEFAULT = (220, 64)
#: First number of the colour images (NSD-synthetic: 221..284).
COLOUR_START = 221
#: NSD-Imagery response gains (see the module's text).
IMAGERY_GAIN = 0.3
ATTENTION_GAIN = 0.5
#: Share of each shared-image class (the rest are objects).
_CLASS_SHARE = {"white noise": 0.1, "pink noise": 0.1, "grating": 0.1}


# -- images -----------------------------------------------------------------------------------------------------------


def _object_image(rng: np.random.Generator, category: str, colour: str, background: str, x: float, y: float,
                  size: float, image_size: int) -> np.ndarray:
    """One object on a shaded, textured background, drawn as :func:`~bids_recon.sim.stimuli.make_stimuli` draws."""
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / max(image_size - 1, 1) - 0.5
    coarse = rng.standard_normal((5, 5)).astype(np.float32)
    tex = np.asarray(Image.fromarray(coarse, mode="F").resize((image_size, image_size), Image.Resampling.BICUBIC),
                     dtype=np.float32)
    tex = (tex - tex.mean()) / (tex.std() + 1e-6)
    angle, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.3)
    shade = 1.0 + amp * (np.cos(angle) * xx + np.sin(angle) * yy) * 2 + 0.04 * tex
    bg = np.asarray(BACKGROUNDS[background], dtype=np.float32) / 255.0
    obj = np.asarray(COLOURS[colour], dtype=np.float32) / 255.0
    alpha = draw_object_mask(category, x, y, size, image_size)[..., None]
    img = bg * shade[..., None] * (1 - alpha) + obj * (1.0 + 0.05 * tex[..., None]) * alpha
    return np.round(np.clip(img, 0, 1) * 255) / 255.0


def _noise_image(rng: np.random.Generator, kind: str, image_size: int) -> np.ndarray:
    white = rng.standard_normal((image_size, image_size, 3))
    if kind == "pink noise":
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(image_size), np.fft.fftfreq(image_size)))
        f[0, 0] = 1.0
        white = np.real(np.fft.ifft2(np.fft.fft2(white, axes=(0, 1)) / f[..., None], axes=(0, 1)))
        white[..., 1:] = white[..., :1] + 0.3 * white[..., 1:]  # mostly luminance
    img = 0.5 + 0.18 * (white - white.mean()) / (white.std() + 1e-9)
    return np.round(np.clip(img, 0, 1) * 255) / 255.0


def _grating(rng: np.random.Generator, image_size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size
    theta, cycles = rng.uniform(0, np.pi), rng.uniform(1.5, 4.0)
    wave = np.sin(2 * np.pi * cycles * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 2 * np.pi))
    tint = rng.uniform(0.7, 1.0, 3)
    img = 0.5 + 0.4 * wave[..., None] * tint
    return np.round(np.clip(img, 0, 1) * 255) / 255.0


def _object_params(rng: np.random.Generator, subclass: str) -> tuple[float, float, float]:
    """``(x, y, size)`` of an out-of-distribution object."""
    if subclass == "small object":
        size = rng.uniform(0.08, 0.18)
    elif subclass == "large object":
        size = rng.uniform(0.55, 0.8)
    else:
        size = rng.uniform(0.2, 0.5)
    if subclass == "off-centre object":
        pos = [rng.uniform(0.06, 0.16), rng.uniform(0.06, 0.94)]
        rng.shuffle(pos)
        x, y = (1 - p if rng.uniform() < 0.5 else p for p in pos)
    else:
        lo = min(0.5, max(0.1, size / 2 + 0.02))
        x, y = lo + (1 - 2 * lo) * rng.uniform(0, 1, 2)
    return float(x), float(y), float(size)


def synthetic_images(rng: np.random.Generator, n_shared: int, image_size: int) -> tuple[np.ndarray, pd.DataFrame]:
    """NSD-synthetic-like shared images 1..n_shared: ``(images (n, H, W, 3) float32, table)`` with ``image_number``,
    ``Image``, ``Image class``, ``Image subclass``, ``category``, ``colour``, ``background``, ``x``, ``y``, ``size``
    (object images; empty / NaN otherwise)."""
    counts = {k: int(round(v * n_shared)) for k, v in _CLASS_SHARE.items()}
    n_obj = n_shared - sum(counts.values())
    kinds = (list(np.resize(["small object", "large object", "off-centre object"], n_obj))
             + [k for k, n in counts.items() for _ in range(n)])
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    images = np.empty((n_shared, image_size, image_size, 3), dtype=np.float32)
    rows = []
    colours, backgrounds = list(COLOURS), list(BACKGROUNDS)
    for i, kind in enumerate(kinds):
        row = {"image_number": i + 1, "Image": f"synthetic{i + 1:03d}", "Image subclass": kind,
               "Image class": "object" if kind.endswith("object") else kind.split()[-1], "category": "",
               "colour": "", "background": "", "x": np.nan, "y": np.nan, "size": np.nan}
        if kind.endswith("object"):
            x, y, size = _object_params(rng, kind)
            row.update(category=str(rng.choice(CATEGORIES)), colour=str(rng.choice(colours)),
                       background=str(rng.choice(backgrounds)), x=round(x, 4), y=round(y, 4), size=round(size, 4))
            images[i] = _object_image(rng, row["category"], row["colour"], row["background"], row["x"], row["y"],
                                      row["size"], image_size)
        elif kind == "grating":
            images[i] = _grating(rng, image_size)
        else:
            images[i] = _noise_image(rng, kind, image_size)
        rows.append(row)
    return images, pd.DataFrame(rows)


def colour_images(rng: np.random.Generator, shared: pd.DataFrame, n_colour: int, image_size: int
                  ) -> tuple[np.ndarray, pd.DataFrame]:
    """One subject's colour images (numbers 221..): the shared object images redrawn in another object colour and on
    another background (a per-subject colour mapping)."""
    objects = shared[shared["Image class"] == "object"]
    if len(objects) == 0:
        raise UsageError("NSD-synthetic stand-in: no object images to recolour")
    source = objects.iloc[np.resize(np.arange(len(objects)), n_colour)]
    colours, backgrounds = list(COLOURS), list(BACKGROUNDS)
    colour_map = dict(zip(colours, rng.permutation(colours), strict=True))
    background_map = dict(zip(backgrounds, rng.permutation(backgrounds), strict=True))
    images = np.empty((n_colour, image_size, image_size, 3), dtype=np.float32)
    rows = []
    for k, row in enumerate(source.to_dict("records")):
        colour = colour_map[row["colour"]]
        if colour == row["colour"]:
            colour = colours[(colours.index(colour) + 1) % len(colours)]
        new = {**row, "image_number": COLOUR_START + k, "Image": f"colour{k + 1:02d}_of_{row['Image']}",
               "Image class": "colour", "Image subclass": "recoloured object", "colour": colour,
               "background": background_map[row["background"]]}
        images[k] = _object_image(rng, new["category"], new["colour"], new["background"], new["x"], new["y"],
                                  new["size"], image_size)
        rows.append(new)
    return images, pd.DataFrame(rows)


def _widen(images: np.ndarray) -> np.ndarray:
    """uint8 images padded left and right with their edge columns' mean grey (NSD-synthetic's are wider than tall)."""
    pad = max(1, images.shape[2] // 4)
    out = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
    fill = np.full((*out.shape[:2], pad, 3), 128, dtype=np.uint8)
    return np.concatenate([fill, out, fill], axis=2)


def synthetic_order(rng: np.random.Generator, numbers: np.ndarray, n_runs: int = SYNTHETIC_RUNS,
                    per_run: int = SYNTHETIC_TRIALS_PER_RUN, n_oneback: int = SYNTHETIC_ONEBACK,
                    blanks: int = SYNTHETIC_BLANKS) -> tuple[np.ndarray, np.ndarray]:
    """``masterordering`` (n_runs * per_run image numbers: every number at least once, ``n_oneback`` one-back repeats
    a run, no accidental repeats otherwise) and ``stimpattern`` (1 x n_runs x per_run + blanks)."""
    numbers = np.asarray(numbers)
    n_other = per_run - n_oneback
    if n_other < 1 or n_oneback < 0:
        raise UsageError(f"NSD-synthetic design: {per_run} trials a run cannot hold {n_oneback} one-back repeats")
    pool = np.concatenate([rng.permutation(numbers),
                           rng.choice(numbers, max(0, n_runs * n_other - len(numbers)))])[:n_runs * n_other]
    pool = pool[rng.permutation(len(pool))]
    order = []
    for run in range(n_runs):
        shown = list(pool[run * n_other:(run + 1) * n_other])
        for k in range(1, len(shown)):  # no accidental one-back repeats
            if shown[k] == shown[k - 1]:
                swap = next((j for j in range(len(shown)) if shown[j] != shown[k]
                             and (j == 0 or shown[j - 1] != shown[k]) and (j + 1 >= len(shown)
                                                                           or shown[j + 1] != shown[k])), None)
                if swap is not None:
                    shown[k], shown[swap] = shown[swap], shown[k]
        repeat_after = set(rng.choice(len(shown), min(n_oneback, len(shown)), replace=False).tolist())
        trials = []
        for k, number in enumerate(shown):
            trials.append(number)
            if k in repeat_after:
                trials.append(number)
        trials += [trials[-1]] * (per_run - len(trials))
        order.append(trials)
    pattern = np.zeros((1, n_runs, per_run + blanks), dtype=np.uint8)
    for run in range(n_runs):
        pattern[0, run, np.sort(rng.choice(per_run + blanks, per_run, replace=False))] = 1
    return np.asarray(order, dtype=np.int64).ravel(), pattern


# -- NSD-Imagery targets -----------------------------------------------------------------------------------------------


def _line_image(angles: tuple[float, ...], image_size: int) -> np.ndarray:
    """Light bars through the centre at ``angles`` (degrees; two: a cross) on a grey background."""
    big = image_size * 4
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    half_len, half_w = 0.42 * big, 0.05 * big
    for deg in angles:
        t = np.deg2rad(deg)
        d, n = np.array([np.cos(t), -np.sin(t)]), np.array([np.sin(t), np.cos(t)])
        c = np.array([big / 2, big / 2])
        corners = [c + s1 * half_len * d + s2 * half_w * n for s1, s2 in ((1, 1), (1, -1), (-1, -1), (-1, 1))]
        draw.polygon([tuple(p) for p in corners], fill=255)
    alpha = np.asarray(canvas.resize((image_size, image_size), Image.Resampling.BOX), dtype=np.float32)[..., None]
    alpha /= 255.0
    img = 0.5 * (1 - alpha) + 0.92 * alpha
    return np.round(np.repeat(img, 3, axis=-1) * 255) / 255.0


def imagery_targets(data: MultiSubjectData, rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    """The 12 target images of sets A and B, ``(images, table)``; table: ``letter``, ``set``, ``file``, ``source``,
    ``category``, ``colour``, ``size``, ``x``, ``y`` (what the responses use)."""
    from bids_recon.features.resolvers.nsdexperiments import IMAGERY_TARGETS

    size = data.images.shape[1]
    letters_a = [k for k, v in IMAGERY_TARGETS.items() if v[0] == "A"]
    letters_b = [k for k, v in IMAGERY_TARGETS.items() if v[0] == "B"]
    images, rows = [], []
    for letter in letters_a:
        name = IMAGERY_TARGETS[letter][1]
        angle = float(name[4:9])
        angles = (angle,) if name.startswith("bar") else (angle, angle + 90.0)
        images.append(_line_image(angles, size))
        rows.append({"letter": letter, "set": "A", "file": f"setA/{name}", "source": "drawn",
                     "category": "bar" if name.startswith("bar") else "cross"})
    est = image_attributes(np.asarray(images))
    names = list(COLOURS)
    for k, row in enumerate(rows):
        row.update(colour=names[int(np.argmax(est["colour"][k]))] if est["colour"][k].any() else "",
                   size=float(est["size"][k]), x=float(est["x"][k]), y=float(est["y"][k]))
    table = data.stim_table
    test = table.index[table["test"].to_numpy(bool)].to_numpy()
    chosen = np.sort(rng.choice(test, len(letters_b), replace=len(test) < len(letters_b)))
    for letter, row in zip(letters_b, chosen, strict=True):
        images.append(data.images[row])
        rows.append({"letter": letter, "set": "B", "file": f"setB/{IMAGERY_TARGETS[letter][1]}",
                     "source": f"stim_id {table['stim_id'].iloc[row]}", "category": table["category"].iloc[row],
                     "colour": table["colour"].iloc[row], "size": float(table["size"].iloc[row]),
                     "x": float(table["x"].iloc[row]), "y": float(table["y"].iloc[row])})
    return np.asarray(images, dtype=np.float32), pd.DataFrame(rows)


# -- betas ------------------------------------------------------------------------------------------------------------


def trial_responses(data: MultiSubjectData, index: int, images: np.ndarray, table: pd.DataFrame | None,
                    gain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``evoked + gain * response + noise`` (n_trials, n_roi_voxels) of subject ``index`` (no session effects);
    rows with ``gain == 0`` get no image response (``images`` there are ignored)."""
    sub = data.subjects[index]
    gain = np.asarray(gain, dtype=np.float64)
    out = np.empty((len(gain), len(sub.voxel_index)), dtype=np.float64)
    seen = gain != 0
    if seen.any():
        part = table.iloc[np.flatnonzero(seen)].reset_index(drop=True) if table is not None else None
        single = data.respond(index, images[seen], rng, stim_table=part, single_trial=True).astype(np.float64)
        if np.any(gain[seen] != 1):
            clean = data.respond(index, images[seen], stim_table=part).astype(np.float64)
            single -= (1 - gain[seen])[:, None] * clean
        out[seen] = single
    if (~seen).any():
        n = int((~seen).sum())
        out[~seen] = sub.evoked[None, :] + rng.standard_normal((n, out.shape[1])) * sub.noise_sd[None, :]
    return out


def _session(data: MultiSubjectData, index: int, roi_betas: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A new day's gain and offset applied, and the betas placed on the brain mask's voxels (C order), the brain
    outside the ROIs noise: ``(betas (n, n_brain) float32, gain, offset)``."""
    sub = data.subjects[index]
    p = data.preset
    gain = np.exp(p.session_scale_sd * rng.standard_normal(roi_betas.shape[1]))
    offset = rng.normal(0.0, p.session_offset_sd, roi_betas.shape[1])
    brain = np.flatnonzero(sub.mask.ravel())
    in_roi = np.searchsorted(brain, sub.voxel_index)
    out = rng.standard_normal((len(roi_betas), len(brain))).astype(np.float32) * float(np.median(sub.noise_sd))
    out[:, in_roi] = roi_betas * gain[None, :] + offset[None, :]
    return out, gain.astype(np.float32), offset.astype(np.float32)


def _response_table(table: pd.DataFrame) -> pd.DataFrame:
    return table[["category", "colour", "size", "x", "y"]].reset_index(drop=True)


def write_nsdsynthetic_experiment(root: Path, truth: Path, data: MultiSubjectData) -> dict[str, object]:
    """NSD-synthetic for every subject of ``data`` under ``root``; truth in ``truth/nsdsynthetic``. Returns a
    summary (images, trials)."""
    from bids_recon.sim.nsdexperiments import write_nsdsynthetic

    n_shared, n_colour = SYNTHETIC_IMAGES.get(data.preset.name, SYNTHETIC_IMAGES_DEFAULT)
    size = data.images.shape[1]
    shared, shared_table = synthetic_images(np.random.default_rng([data.seed, 30]), n_shared, size)
    numbers = np.concatenate([np.arange(1, n_shared + 1), COLOUR_START + np.arange(n_colour)])
    order, pattern = synthetic_order(np.random.default_rng([data.seed, 31]), numbers)
    runs = np.repeat(np.arange(1, SYNTHETIC_RUNS + 1), SYNTHETIC_TRIALS_PER_RUN)
    folder = Path(truth) / "nsdsynthetic"
    folder.mkdir(parents=True, exist_ok=True)
    tables = [shared_table.assign(subject="")]
    is_object = (shared_table["Image class"] == "object").to_numpy()
    for s, sub in enumerate(data.subjects):
        rng = np.random.default_rng([data.seed, 32, s])
        colour, colour_table = colour_images(rng, shared_table, n_colour, size)
        tables.append(colour_table.assign(subject=sub.subject))
        # trial images: row of [shared; colour] for each trial
        row = np.where(order >= COLOUR_START, n_shared + order - COLOUR_START, order - 1)
        images = np.concatenate([shared, colour])[row]
        with_attrs = np.concatenate([is_object, np.ones(n_colour, bool)])[row]
        attrs_table = _response_table(pd.concat([shared_table, colour_table], ignore_index=True).iloc[row])
        roi = np.empty((len(order), len(sub.voxel_index)))
        for has, tab in ((True, attrs_table), (False, None)):
            at = np.flatnonzero(with_attrs == has)
            if len(at):
                part = tab.iloc[at].reset_index(drop=True) if tab is not None else None
                roi[at] = trial_responses(data, s, images[at], part, np.ones(len(at)), rng)
        betas, gain, offset = _session(data, s, roi, rng)
        write_nsdsynthetic(root, sub.subject, betas, order, pattern, _widen(shared), _widen(colour))
        clean = np.concatenate([
            data.respond(s, shared[is_object], stim_table=_response_table(shared_table[is_object])),
            data.respond(s, shared[~is_object]),
            data.respond(s, colour, stim_table=_response_table(colour_table))])
        image_order = np.concatenate([np.flatnonzero(is_object), np.flatnonzero(~is_object),
                                      n_shared + np.arange(n_colour)])
        response = np.empty_like(clean)
        response[image_order] = clean
        np.savez(folder / f"sub-{sub.subject}_truth.npz", response=response,
                 image_number=numbers, session_gain=gain, session_offset=offset, voxel_index=sub.voxel_index)
        pd.DataFrame({"trial": np.arange(1, len(order) + 1), "run": runs, "image_number": order,
                      "stim_id": [str(n) if n < COLOUR_START else f"{n}_subj{sub.subject}" for n in order],
                      "oneback_repeat": np.r_[False, (order[1:] == order[:-1]) & (runs[1:] == runs[:-1])],
                      }).to_csv(folder / f"sub-{sub.subject}_trials.tsv", sep="\t", index=False)
    info = root / "nsddata" / "experiments" / "nsdsynthetic" / "nsdsyntheticimageinformation.csv"
    shared_table[["Image", "Image subclass", "Image class"]].to_csv(info, index=False)
    pd.concat(tables, ignore_index=True).to_csv(folder / "images.tsv", sep="\t", index=False)
    return {"shared": n_shared, "colour": n_colour, "trials": len(order)}


def write_nsdimagery_experiment(root: Path, truth: Path, data: MultiSubjectData) -> dict[str, object]:
    """NSD-Imagery for every subject of ``data`` under ``root``; truth in ``truth/nsdimagery``."""
    from bids_recon.features.resolvers.nsdexperiments import IMAGERY_SETS
    from bids_recon.sim.nsdexperiments import imagery_beta_rows, imagery_runs, write_nsdimagery

    targets, target_table = imagery_targets(data, np.random.default_rng([data.seed, 40]))
    at = {letter: k for k, letter in enumerate(target_table["letter"])}
    pixels = {letter: np.round(targets[k] * 255).astype(np.uint8) for letter, k in at.items()}
    folder = Path(truth) / "nsdimagery"
    folder.mkdir(parents=True, exist_ok=True)
    for s, sub in enumerate(data.subjects):
        rng = np.random.default_rng([data.seed, 41, s])
        runs = imagery_runs(seed=int(rng.integers(2**31)))
        rows = imagery_beta_rows(runs)
        condition = rows["run_name"].str[:3].map({"vis": "vision", "img": "imagery", "att": "attention"})
        has_image = rows["CONDITION"].map(lambda c: IMAGERY_SETS.get(c) in ("A", "B")).to_numpy(bool)
        gain = np.select([condition == "vision", condition == "imagery",
                          (condition == "attention") & (rows["phase"] == "detection")],
                         [1.0, IMAGERY_GAIN, ATTENTION_GAIN], 0.0) * has_image
        index = np.array([at.get(c, 0) for c in rows["CONDITION"]])
        roi = trial_responses(data, s, targets[index], _response_table(target_table).iloc[index]
                              .reset_index(drop=True), gain, rng)
        betas, sgain, offset = _session(data, s, roi, rng)
        write_nsdimagery(root, sub.subject, betas, runs, pixels)
        rows.assign(condition=condition, gain=gain).to_csv(folder / f"sub-{sub.subject}_betas.tsv", sep="\t",
                                                           index=False)
        response = data.respond(s, targets, stim_table=_response_table(target_table))
        np.savez(folder / f"sub-{sub.subject}_truth.npz", response=response,
                 letter=target_table["letter"].to_numpy(str), session_gain=sgain, session_offset=offset,
                 voxel_index=sub.voxel_index)
    target_table.to_csv(folder / "targets.tsv", sep="\t", index=False)
    return {"targets": len(target_table), "betas": 720}


_WRITERS = {"nsdsynthetic": write_nsdsynthetic_experiment, "nsdimagery": write_nsdimagery_experiment}

_README = """
## NSD-synthetic and NSD-Imagery (--experiments)

Written by bids_recon.sim.multiexperiments (its docstring gives the model) from the same subjects' generative model,
one new session each (its own gain and offset). nsdsynthetic/: images.tsv (image_number, Image, Image class /
subclass, object attributes; subject = whose colour image), sub-XX_trials.tsv (trial order: run, image_number,
stim_id, oneback_repeat), sub-XX_truth.npz (response: noise-free responses (images x ROI voxels, rows in
image_number order), session_gain, session_offset, voxel_index). nsdimagery/: targets.tsv (letter, set, file,
source: drawn or the core stim_id), sub-XX_betas.tsv (one row per beta: run_name, TRIAL, CONDITION = target, CUE,
phase, condition, gain = the share of the target's response in the beta), sub-XX_truth.npz (response per target
letter, session_gain, session_offset, voxel_index).
"""


def write_experiments(root: Path, truth: Path, data: MultiSubjectData, experiments: list[str] | tuple[str, ...]
                      ) -> dict[str, dict[str, object]]:
    """Write each of ``experiments`` (:data:`EXPERIMENTS`) for every subject of ``data`` into the NSD stand-in
    ``root`` (already written by :func:`~bids_recon.sim.multisubject.write_nsd_multisubject`), its truth into
    ``truth``; returns a summary by experiment."""
    unknown = [e for e in experiments if e not in _WRITERS]
    if unknown:
        raise UsageError(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    out = {name: _WRITERS[name](Path(root), Path(truth), data) for name in dict.fromkeys(experiments)}
    readme = Path(truth) / "README.md"
    readme.write_text((readme.read_text() if readme.is_file() else "") + _README)
    return out


__all__ = ["EXPERIMENTS", "colour_images", "imagery_targets", "synthetic_images", "synthetic_order",
           "trial_responses", "write_experiments", "write_nsdimagery_experiment", "write_nsdsynthetic_experiment"]
