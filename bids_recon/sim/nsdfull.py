"""A full-size stand-in for NSD subject 01's published betas (``bids_recon-sim OUT --layout nsd --preset full``).

:func:`write_nsd_full` writes NSD's download root ``OUT`` with exactly the files the published-betas path reads
(``--betas nsd=OUT``, :mod:`bids_recon.glm.importers.nsd`, and the ``nsd`` stimulus resolver), at NSD subject 01's
real sizes: 37 sessions x 750 trials of int16 betas on the 81 x 104 x 83 ``func1pt8mm`` grid (x 300, 0 outside the
brain), the brain mask, ``roi/streams.nii.gz`` + ``nsdgeneral.nii.gz``, ``behav/responses.tsv`` in NSD's columns,
``nsd_expdesign.mat`` in NSD's layout (40 sessions of which 37 are written), ``nsd_stim_info_merged.csv`` (73,000
rows), ``nsd_stimuli.hdf5`` (``imgBrick`` 73000 x 425 x 425 x 3, only subject 01's 10,000 rows written: HDF5 does
not allocate the others) and COCO caption files. No raw BOLD, no fMRIPrep derivatives, no TemplateFlow folder.

The content is cheap and known: each 73k image has a latent vector ``f`` (:data:`N_FEATURES` numbers). The image is
a 6 x 6 colour field (from ``f[COLOUR]``) upsampled bilinearly plus an oriented grating (``f[GRATING]``); its five
captions draw their words from ``f[WORDS]``. Inside ``nsdgeneral`` a voxel's beta is ``f @ W[:, v]`` plus noise
(early voxels weigh only the image part of ``f``, ventral only the word part, the other streams both), with
single-trial SNR (signal sd / noise sd) 0.3-0.5; other brain voxels are pure noise of sd 1.5 %. Session ``n``'s
noise comes from ``np.random.default_rng([seed, 1, n])``, so the files do not depend on the number of workers, and
:func:`session_betas` recomputes any session's exact values from the ground truth
(``OUT_groundtruth/sub-01_nsdfull.npz``).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import UsageError
from bids_recon.sim.betas import NSD_SCALE, STREAMS, _save
from bids_recon.sim.layouts import coco_captions_file

#: Length of each image's latent vector ``f``, and its parts.
N_FEATURES = 64
COLOUR = slice(0, 16)
GRATING = slice(16, 20)
WORDS = slice(20, 64)
#: Side of the low-resolution colour field.
FIELD = 6
#: NSD subject 01's func1pt8mm numbers: brain voxels, and each streams label's voxels (scaled to other grids).
NSD_GRID = (81, 104, 83)
NSD_BRAIN = 330_000
STREAM_SIZES = {1: 5900, 5: 7600, 2: 450, 3: 350, 4: 450, 6: 650, 7: 600}
#: Parietal voxels (label 7) outside nsdgeneral (the farthest from its centre): nsdgeneral ~ 15,700 voxels.
PARIETAL_OUTSIDE = 300
#: Where each stream lies, in the brain ellipsoid's normalised coordinates (x right, y anterior, z superior),
#: and the stretch of its blob per axis (larger: longer along that axis).
STREAM_PLACES = {1: ((0.0, -0.82, 0.0), (1.3, 0.7, 1.0)), 5: ((0.0, -0.35, -0.5), (1.4, 1.6, 0.6)),
                 2: ((0.0, -0.62, -0.32), (1.0, 1.0, 1.0)), 3: ((0.5, -0.66, 0.0), (1.0, 1.0, 1.0)),
                 4: ((0.0, -0.62, 0.35), (1.0, 1.0, 1.0)), 6: ((0.6, -0.38, -0.05), (1.0, 1.0, 1.0)),
                 7: ((0.0, -0.35, 0.6), (1.0, 1.0, 1.0))}
#: Noise sd (percent signal change) of the brain voxels, and the range of the single-trial SNR in nsdgeneral.
NOISE_SD = 1.5
SNR_RANGE = (0.3, 0.5)
#: Trials per block when a session's betas are made (fixed: the random stream does not depend on it).
BLOCK = 50
N_SUBJECTS = 8
RUNS_PER_SESSION = 12
VOXEL_SIZE = 1.8

ADJECTIVES = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "black", "white", "grey",
              "dark", "bright", "pale", "small", "large", "tall", "short", "old", "young", "wooden", "metal",
              "striped", "spotted", "shiny", "dusty", "wet", "dry", "busy", "empty", "quiet", "crowded", "tiny",
              "huge", "round", "square", "long", "narrow", "wide", "colourful", "plain", "fancy", "broken", "new",
              "clean", "dirty", "sunny", "snowy", "rainy", "foggy")
NOUNS = ("man", "woman", "child", "dog", "cat", "horse", "cow", "sheep", "bird", "elephant", "giraffe", "zebra",
         "bear", "train", "bus", "car", "truck", "bicycle", "motorcycle", "airplane", "boat", "kite", "surfboard",
         "skateboard", "pizza", "sandwich", "cake", "banana", "apple", "orange", "broccoli", "bowl", "cup", "bottle",
         "chair", "couch", "bed", "table", "laptop", "phone", "clock", "vase", "umbrella", "bench", "sign",
         "hydrant", "toilet", "sink", "oven", "book", "teddy", "frisbee", "racket", "tie", "suitcase", "player",
         "group", "crowd", "building", "tree")
VERBS = ("standing", "sitting", "lying", "walking", "running", "eating", "drinking", "holding", "riding", "flying",
         "parked", "waiting", "playing", "looking", "jumping", "resting", "sleeping", "carrying", "pulling",
         "crossing", "driving", "swimming", "climbing", "leaning", "hanging", "posing", "smiling", "reading",
         "cooking", "throwing", "catching", "watching", "grazing", "floating", "displayed", "stacked", "covered",
         "placed", "gathered", "moving")
PLACES = ("on a beach", "in a field", "on a street", "in a kitchen", "in a park", "near a lake", "on a table",
          "in a room", "at a station", "on a road", "in the snow", "on the grass", "by the water", "in a city",
          "on a hill", "in a forest", "at the zoo", "on a farm", "in a garden", "at night", "on a plate",
          "in a bathroom", "on a sidewalk", "near a fence", "under a tree", "next to a building", "in the sky",
          "on the ocean", "in a market", "at a restaurant", "on a bridge", "in a parking lot", "on a shelf",
          "at an airport", "on a court", "in a stadium", "on a counter", "in a yard", "by a window",
          "in front of a wall", "on the sand", "in a desert", "on a mountain", "in a living room", "at a table",
          "in a crowd", "on a track", "near a river", "in a bedroom", "on a rooftop")


@dataclass
class NsdFullDataset:
    """What :func:`write_nsd_full` wrote.

    Attributes
    ----------
    root : Path
        NSD's download root (``--betas nsd=ROOT``).
    truth_file : Path
        ``<root>_groundtruth/sub-01_nsdfull.npz``.
    grid : tuple of int
    image_size : int
    n_sessions, trials_per_session : int
    counts : dict
        ``trials``, ``brain`` and ``nsdgeneral`` voxels, voxels per streams label (``stream_1``...), ``images``
        written, ``images_total`` (rows of imgBrick), ``shared_in_sessions`` (shared images shown 3 times in the
        written sessions).
    sizes : dict
        Bytes on disk: ``betas`` (all session files), ``stimuli`` (nsd_stimuli.hdf5), ``total`` (the root).
    session_files : list of Path
    """

    root: Path
    truth_file: Path
    grid: tuple[int, int, int]
    image_size: int
    n_sessions: int
    trials_per_session: int
    counts: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    session_files: list[Path] = field(default_factory=list)


# -- geometry ---------------------------------------------------------------------------------------------------------


def nsd_affine() -> np.ndarray:
    """The func1pt8mm grid's affine: ``diag(1.8, 1.8, 1.8, 1)``."""
    return np.diag([VOXEL_SIZE, VOXEL_SIZE, VOXEL_SIZE, 1.0])


def _normalised(grid: tuple[int, int, int], scale: float = 0.93) -> list[np.ndarray]:
    centre = (np.asarray(grid, dtype=float) - 1) / 2
    axes = np.ogrid[:grid[0], :grid[1], :grid[2]]
    return [(a - c) / (c * scale) for a, c in zip(axes, centre, strict=True)]


def brain_and_streams(grid: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The brain mask, the streams labels (-1 outside the brain, 0 in no stream, 1-7) and nsdgeneral (-1/0/1).

    The brain is the ``330,000 / (81 x 104 x 83)`` fraction of the grid nearest the centre in a slightly bumpy
    ellipsoidal metric; each stream the voxels nearest its centre at the back of the
    brain (:data:`STREAM_PLACES`), big ones first, in NSD subject 01's proportions (:data:`STREAM_SIZES`).
    """
    u, v, w = _normalised(grid, 1.0)
    radius = np.sqrt(u**2 + v**2 + w**2) * (1 + 0.02 * np.sin(3 * u + 2 * v) * np.cos(2 * w))
    n_grid = int(np.prod(grid))
    n_brain = int(round(NSD_BRAIN / np.prod(NSD_GRID) * n_grid))
    order = np.argsort(radius.ravel(), kind="stable")
    mask = np.zeros(n_grid, dtype=bool)
    mask[order[:n_brain]] = True
    mask = mask.reshape(grid)
    scale = n_brain / NSD_BRAIN
    streams = np.where(mask, 0, -1).astype(np.int16)
    brain = np.flatnonzero(mask.ravel())
    xyz = np.stack(np.unravel_index(brain, grid), axis=1).astype(float)
    centre = (np.asarray(grid, dtype=float) - 1) / 2
    half = centre * 0.93
    free = np.ones(len(brain), dtype=bool)
    parietal_far = np.zeros(len(brain), dtype=bool)
    for label, size in STREAM_SIZES.items():
        place, stretch = STREAM_PLACES[label]
        target = centre + np.asarray(place) * half
        dist = np.sqrt((((xyz - target) / np.asarray(stretch)) ** 2).sum(axis=1))
        dist[~free] = np.inf
        k = max(1, int(round(size * scale)))
        chosen = np.argsort(dist, kind="stable")[:k]
        free[chosen] = False
        streams.ravel()[brain[chosen]] = label
        if label == 7:
            n_out = int(round(PARIETAL_OUTSIDE * scale))
            parietal_far[chosen[len(chosen) - n_out:]] = True
    general = np.where(mask, 0, -1).astype(np.int16)
    inside = (streams.ravel()[brain] > 0) & ~parietal_far
    general.ravel()[brain[inside]] = 1
    return mask, streams, general


# -- the experimental design ------------------------------------------------------------------------------------------


def run_sizes(trials_per_session: int, runs: int = RUNS_PER_SESSION) -> np.ndarray:
    """Trials of each run: as equal as can be, the odd runs (1, 3, ...) first to get one more (750: 63, 62, ...)."""
    base, extra = divmod(trials_per_session, runs)
    sizes = np.full(runs, base, dtype=np.int64)
    order = [*range(0, runs, 2), *range(1, runs, 2)]
    sizes[order[:extra]] += 1
    return sizes


@dataclass
class NsdDesign:
    """NSD's experimental design (``nsd_expdesign.mat``), 1-based as MATLAB has it.

    ``masterordering`` (n_trials,) indices into ``subjectim``'s columns; ``subjectim`` (8, n_subject_images) 73k
    ids, the first ``n_shared`` columns ``sharedix``; ``stimpattern`` (sessions, runs, slots) 1 where a trial shows
    an image; ``held`` the shared columns (1-based) shown only after the written sessions.
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray
    stimpattern: np.ndarray
    held: np.ndarray
    n_images: int


def make_design(rng: np.random.Generator, n_sessions: int, trials_per_session: int, design_sessions: int,
                n_subject_images: int, n_shared: int, held_shared: int) -> NsdDesign:
    """Every image 3 times over ``design_sessions`` sessions; the shared images but ``held_shared`` 3 times in the
    first ``n_sessions`` (the written ones), those ``held_shared`` only after them."""
    n_trials = design_sessions * trials_per_session
    written = n_sessions * trials_per_session
    n_images = n_shared + N_SUBJECTS * (n_subject_images - n_shared)
    ids = rng.permutation(n_images) + 1
    sharedix = np.sort(ids[:n_shared])
    subjectim = np.zeros((N_SUBJECTS, n_subject_images), dtype=np.int64)
    own = n_subject_images - n_shared
    for s in range(N_SUBJECTS):
        subjectim[s, :n_shared] = sharedix
        subjectim[s, n_shared:] = ids[n_shared + s * own:n_shared + (s + 1) * own]
    held = np.sort(rng.choice(n_shared, size=held_shared, replace=False)) + 1
    shown = np.setdiff1d(np.arange(1, n_shared + 1), held)
    others = rng.permutation(np.repeat(np.arange(n_shared + 1, n_subject_images + 1), 3))
    n_first = written - 3 * len(shown)
    first = rng.permutation(np.concatenate([np.repeat(shown, 3), others[:n_first]]))
    second = rng.permutation(np.concatenate([np.repeat(held, 3), others[n_first:]]))
    order = np.concatenate([first, second])
    assert len(order) == n_trials
    sizes = run_sizes(trials_per_session)
    slots = int(sizes.max()) + RUNS_PER_SESSION
    pattern = np.zeros((design_sessions, RUNS_PER_SESSION, slots), dtype=np.uint8)
    for s in range(design_sessions):
        for r, size in enumerate(sizes):
            pattern[s, r, 1 + np.sort(rng.choice(slots - 2, size=int(size), replace=False))] = 1
    return NsdDesign(order, subjectim, sharedix, pattern, held, n_images)


def _check_sizes(n_sessions, trials_per_session, design_sessions, n_subject_images, n_shared, held_shared, grid,
                 image_size, forms, workers) -> None:
    if not 1 <= n_sessions <= design_sessions:
        raise UsageError(f"n_sessions={n_sessions}: must be 1..design_sessions ({design_sessions})")
    if trials_per_session < RUNS_PER_SESSION:
        raise UsageError(f"trials_per_session={trials_per_session}: NSD's sessions have {RUNS_PER_SESSION} runs")
    if design_sessions * trials_per_session != 3 * n_subject_images:
        raise UsageError(f"{design_sessions} sessions x {trials_per_session} trials must show each of the "
                         f"{n_subject_images} images 3 times")
    if not 0 <= held_shared <= n_shared < n_subject_images:
        raise UsageError("need 0 <= held_shared <= n_shared < n_subject_images")
    if 3 * (n_shared - held_shared) > n_sessions * trials_per_session:
        raise UsageError("the written sessions are too few for the shared images")
    if 3 * held_shared > (design_sessions - n_sessions) * trials_per_session:
        raise UsageError("the sessions not written are too few for the held shared images")
    if len(grid) != 3 or min(grid) < 8 or image_size < 8:
        raise UsageError("grid needs 3 dimensions of >= 8 voxels, image_size >= 8")
    if not forms or set(forms) - {"nii", "hdf5"}:
        raise UsageError(f"forms={forms!r}: nii and/or hdf5")
    if workers < 1:
        raise UsageError("workers must be >= 1")


# -- responses.tsv and the stimulus table -----------------------------------------------------------------------------


def responses_table(rng: np.random.Generator, design: NsdDesign, n_sessions: int,
                    trials_per_session: int) -> pd.DataFrame:
    """``responses.tsv`` of subject 01 in NSD's columns (recognition-task values plausible, not NSD's)."""
    written = n_sessions * trials_per_session
    order = design.masterordering[:written]
    n = written
    sizes = run_sizes(trials_per_session)
    session = np.repeat(np.arange(1, n_sessions + 1), trials_per_session)
    run = np.tile(np.repeat(np.arange(1, RUNS_PER_SESSION + 1), sizes), n_sessions)
    trial = np.tile(np.concatenate([np.arange(1, s + 1) for s in sizes]), n_sessions)
    first_seen: dict[int, int] = {}
    last_seen: dict[int, tuple[int, int]] = {}
    old_total = np.zeros(n, dtype=np.int64)
    old_current = np.zeros(n, dtype=np.int64)
    memory_recent = np.full(n, np.nan)
    memory_first = np.full(n, np.nan)
    for t, column in enumerate(order.tolist()):
        if column in first_seen:
            old_total[t] = 1
            last_t, last_session = last_seen[column]
            old_current[t] = int(last_session == session[t])
            memory_recent[t] = t - last_t
            memory_first[t] = t - first_seen[column]
        else:
            first_seen[column] = t
        last_seen[column] = (t, int(session[t]))
    missing = rng.uniform(size=n) < 0.01
    correct_total = (rng.uniform(size=n) < np.where(old_total == 1, 0.75, 0.85)).astype(float)
    button = np.where((old_total == 1) == (correct_total == 1), 2.0, 1.0)  # 1 new, 2 old
    change = (rng.uniform(size=n) < 0.02).astype(float)
    rt = np.round(rng.lognormal(np.log(800), 0.3, size=n), 1)
    time = (737000 + (session - 1) * 7.0 + (run - 1) * 300 / 86400 + (trial - 1) * 4 / 86400).round(8)
    table = pd.DataFrame({
        "SUBJECT": 1, "SESSION": session, "RUN": run, "TRIAL": trial, "TIME": time,
        "ISOLDCURRENT": old_current, "ISCORRECT": ((button == 2) == (old_current == 1)).astype(float), "RT": rt,
        "CHANGEMIND": change, "MEMORYRECENT": memory_recent, "MEMORYFIRST": memory_first,
        "ISOLD_TOTAL": old_total, "ISCORRECT_TOTAL": correct_total, "TOTAL1": 1.0 + change, "TOTAL2": 1.0 + change,
        "BUTTON": button, "MISSINGDATA": missing.astype(int), "73KID": design.subjectim[0, order - 1],
        "10KID": order})
    for column in ("ISCORRECT", "RT", "CHANGEMIND", "ISCORRECT_TOTAL", "TOTAL1", "TOTAL2", "BUTTON"):
        table.loc[missing, column] = np.nan
    return table


def stim_info(rng: np.random.Generator, design: NsdDesign) -> pd.DataFrame:
    """``nsd_stim_info_merged.csv``: the columns :mod:`bids_recon.sim.layouts.nsd` writes, one row per 73k image;
    ``subjectN_repK`` the 1-based trial number (of the 40 sessions) of presentation K, 0 if none."""
    n = design.n_images
    coco = np.sort(rng.choice(600_000, size=n, replace=False) + 1)[rng.permutation(n)]
    split = np.where(rng.uniform(size=n) < 0.2, "val2017", "train2017")
    shared = np.zeros(n, dtype=bool)
    shared[design.sharedix - 1] = True
    info = pd.DataFrame({"cocoId": coco, "cocoSplit": split, "cropBox": "(0, 0, 0.1, 0.1)", "loss": 0.0,
                         "nsdId": np.arange(n), "flagged": False, "BOLD5000": False, "shared1000": shared})
    # trials of each subjectim column, in order (each column is shown 3 times over the whole design)
    by_column = np.argsort(design.masterordering, kind="stable")
    columns = design.masterordering[by_column]
    reps = np.zeros((design.subjectim.shape[1], 3), dtype=np.int64)
    rank = np.arange(len(columns)) - np.searchsorted(columns, columns)
    reps[columns - 1, rank] = by_column + 1
    for s in range(N_SUBJECTS):
        flag = np.zeros(n, dtype=int)
        flag[design.subjectim[s] - 1] = 1
        info[f"subject{s + 1}"] = flag
    for s in range(N_SUBJECTS):
        for k in range(3):
            column = np.zeros(n, dtype=np.int64)
            column[design.subjectim[s] - 1] = reps[:, k]
            info[f"subject{s + 1}_rep{k}"] = column
    return info


# -- images and captions ----------------------------------------------------------------------------------------------


@dataclass
class ContentModel:
    """The fixed maps from ``f`` to images and captions (from ``np.random.default_rng([seed, 0])``)."""

    colour_map: np.ndarray  # (16, FIELD * FIELD * 3)
    word_embeddings: dict[str, np.ndarray]  # slot -> (n_words, 44)

    @classmethod
    def make(cls, seed: int) -> ContentModel:
        rng = np.random.default_rng([seed, 0])
        n_colour = COLOUR.stop - COLOUR.start
        n_words = WORDS.stop - WORDS.start
        colour = (rng.standard_normal((n_colour, FIELD * FIELD * 3)) / np.sqrt(n_colour)).astype(np.float32)
        words = {name: (rng.standard_normal((len(vocab), n_words)) / np.sqrt(n_words)).astype(np.float32)
                 for name, vocab in (("adjective", ADJECTIVES), ("noun", NOUNS), ("verb", VERBS),
                                     ("place", PLACES))}
        return cls(colour, words)


def _upsample_matrix(size: int) -> np.ndarray:
    """(size, FIELD) bilinear interpolation weights (corners aligned)."""
    position = np.linspace(0, FIELD - 1, size)
    low = np.minimum(np.floor(position).astype(int), FIELD - 2)
    frac = position - low
    out = np.zeros((size, FIELD), dtype=np.float32)
    out[np.arange(size), low] = 1 - frac
    out[np.arange(size), low + 1] = frac
    return out


def render_images(features: np.ndarray, model: ContentModel, size: int) -> np.ndarray:
    """Images (n, size, size, 3) uint8 of latent rows ``features`` (n, N_FEATURES): the colour field of
    ``f[COLOUR]`` upsampled bilinearly, plus a grating of orientation ``atan2(f[17], f[16])``, 2-8 cycles per
    image (``f[18]``) and contrast 0.1-0.3 (``f[19]``)."""
    features = np.asarray(features, dtype=np.float32)
    up = _upsample_matrix(size)
    fields = 0.5 + 0.35 * np.tanh(features[:, COLOUR] @ model.colour_map).reshape(-1, FIELD, FIELD, 3)
    grating = features[:, GRATING]
    theta = np.arctan2(grating[:, 1], grating[:, 0])
    cycles = 2 + 6 / (1 + np.exp(-grating[:, 2]))
    contrast = 0.2 + 0.1 * np.tanh(grating[:, 3])
    pixel = np.arange(size, dtype=np.float32)
    out = np.empty((len(features), size, size, 3), dtype=np.uint8)
    for i in range(len(features)):
        rows = np.matmul(up, fields[i].reshape(FIELD, FIELD * 3) * np.float32(255)).reshape(size, FIELD, 3)
        img = np.matmul(up, rows)  # (y, x, colour): up @ field @ up.T per colour
        k = np.float32(2 * np.pi * cycles[i] / size)
        ax = k * np.cos(theta[i]) * pixel
        ay = k * np.sin(theta[i]) * pixel
        amplitude = np.float32(255 * contrast[i])
        wave = np.outer(amplitude * np.cos(ay), np.cos(ax)) - np.outer(amplitude * np.sin(ay), np.sin(ax))
        img += wave[:, :, None] + np.float32(0.5)  # cos(ax + ay): rows y, columns x
        np.clip(img, 0, 255, out=img)
        out[i] = img
    return out


def make_captions(features: np.ndarray, model: ContentModel, rng: np.random.Generator,
                  per_image: int = 5, sharpness: float = 2.0) -> list[list[str]]:
    """``per_image`` captions per row of ``features``: "a {adjective} {noun} {verb} {place}", each word sampled
    with probability ``softmax(sharpness * embeddings @ f[WORDS])`` (Gumbel-max)."""
    words = np.asarray(features, dtype=np.float32)[:, WORDS]
    picks = {}
    for slot, embeddings in model.word_embeddings.items():
        logits = sharpness * (words @ embeddings.T)  # (n, n_words)
        gumbel = rng.gumbel(size=(len(words), per_image, embeddings.shape[0])).astype(np.float32)
        picks[slot] = np.argmax(logits[:, None, :] + gumbel, axis=2)
    out = []
    for i in range(len(words)):
        out.append([f"a {ADJECTIVES[a]} {NOUNS[n]} {VERBS[v]} {PLACES[p]}" for a, n, v, p in
                    zip(picks["adjective"][i], picks["noun"][i], picks["verb"][i], picks["place"][i],
                        strict=True)])
    return out


# -- the betas --------------------------------------------------------------------------------------------------------


def voxel_model(seed: int, streams: np.ndarray, general: np.ndarray, mask: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(general_index, weights, noise_sd, general_position)``: nsdgeneral's voxels (flat C indices of the grid),
    ``W`` (N_FEATURES, n_general): early voxels weigh ``f[COLOUR]`` and ``f[GRATING]`` only, ventral ``f[WORDS]``
    only, the others all of ``f``; each column's norm is ``snr * noise_sd`` (so the signal's sd over images is that,
    ``f`` being standard normal); the noise sd of every brain voxel (C order), and where nsdgeneral's voxels are
    among them."""
    rng = np.random.default_rng([seed, 0, 1])
    brain = np.flatnonzero(mask.ravel())
    general_index = np.flatnonzero(general.ravel() == 1)
    labels = streams.ravel()[general_index]
    noise_sd = np.full(len(brain), NOISE_SD, dtype=np.float32)
    position = np.searchsorted(brain, general_index)
    noise_sd[position] = (NOISE_SD * np.exp(0.15 * rng.standard_normal(len(general_index)))).astype(np.float32)
    use = np.ones((len(general_index), N_FEATURES), dtype=bool)
    image_part = np.zeros(N_FEATURES, dtype=bool)
    image_part[COLOUR] = image_part[GRATING] = True
    use[labels == 1] = image_part
    use[labels == 5] = ~image_part
    direction = rng.standard_normal((len(general_index), N_FEATURES)) * use
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    snr = rng.uniform(*SNR_RANGE, size=len(general_index))
    weights = (direction * (snr * noise_sd[position])[:, None]).T.astype(np.float32)
    return general_index, weights, noise_sd, position


def session_betas(seed: int, session: int, features: np.ndarray, weights: np.ndarray, general_position: np.ndarray,
                  noise_sd: np.ndarray, block: int = BLOCK):
    """Session ``session``'s betas (percent signal change), ``block`` trials at a time: yields ``(first trial,
    array (k, n_brain) float32)`` over the brain's voxels in C order; ``features`` (n_trials, N_FEATURES) are the
    ``f`` of the session's trials in order. Noise from ``np.random.default_rng([seed, 1, session])``."""
    rng = np.random.default_rng([seed, 1, session])
    features = np.asarray(features, dtype=np.float32)
    for start in range(0, len(features), block):
        stop = min(start + block, len(features))
        values = rng.standard_normal((stop - start, len(noise_sd)), dtype=np.float32)
        values *= noise_sd
        values[:, general_position] += features[start:stop] @ weights
        yield start, values


_WORKER: dict = {}


def _init_worker(state: dict) -> None:
    _WORKER.clear()
    _WORKER.update(state)


def _write_session(session: int, features: np.ndarray) -> list[str]:
    """Write ``betas_sessionNN`` (one process; the arrays from :func:`_init_worker`)."""
    import h5py

    s = _WORKER
    grid, folder = s["grid"], Path(s["folder"])
    volume_c = np.zeros((len(features), grid[2], grid[1], grid[0]), dtype=np.int16)  # (T, Z, Y, X)
    flat = volume_c.reshape(len(features), -1)
    for start, values in session_betas(s["seed"], session, features, s["weights"], s["position"], s["noise_sd"]):
        values *= NSD_SCALE
        np.rint(values, out=values)
        np.clip(values, -32768, 32767, out=values)
        flat[start:start + len(values), s["fortran"]] = values.astype(np.int16)
    written = []
    if "nii" in s["forms"]:
        written.append(str(_save(volume_c.transpose(3, 2, 1, 0), s["affine"],
                                 folder / f"betas_session{session:02d}.nii.gz")))
    if "hdf5" in s["forms"]:
        path = folder / f"betas_session{session:02d}.hdf5"
        with h5py.File(path, "w") as handle:
            handle.create_dataset("betas", data=volume_c)
        written.append(str(path))
    return written


# -- the whole --------------------------------------------------------------------------------------------------------


def write_nsd_full(out: Path, seed: int = 0, n_sessions: int = 37, trials_per_session: int = 750,
                   grid: tuple[int, int, int] = NSD_GRID, image_size: int = 425, forms: tuple[str, ...] = ("nii",),
                   workers: int = 2, *, n_subject_images: int = 10_000, n_shared: int = 1000, held_shared: int = 18,
                   design_sessions: int = 40) -> NsdFullDataset:
    """Write NSD subject 01's published betas path at full size (see the module's text).

    Parameters
    ----------
    out : Path
        NSD's download root to write (must not exist or be empty); ``<out>_groundtruth`` gets the ground truth.
        Both are built as ``*.partial`` and renamed at the end.
    seed : int
    n_sessions, trials_per_session : int
        Sessions written (of ``design_sessions``) and trials per session (12 runs, the odd ones one longer).
    grid : tuple of int
        The func1pt8mm grid (affine ``diag(1.8, 1.8, 1.8)``).
    image_size : int
        Side of imgBrick's images.
    forms : tuple of str
        ``nii`` (``betas_sessionNN.nii.gz``) and/or ``hdf5``.
    workers : int
        Processes writing sessions (1: in this process); the files are the same whatever it is.
    n_subject_images, n_shared, held_shared, design_sessions : int
        The design's geometry (NSD: 10,000 images per subject of which 1000 shared, 18 of them only in the 3
        unreleased sessions of 40); ``design_sessions x trials_per_session`` must be ``3 x n_subject_images``;
        imgBrick has ``n_shared + 8 x (n_subject_images - n_shared)`` rows (NSD: 73,000). Small values are for
        tests.

    Returns
    -------
    NsdFullDataset
    """
    import h5py
    from scipy.io import savemat

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    grid = tuple(int(g) for g in grid)
    forms = tuple(forms)
    _check_sizes(n_sessions, trials_per_session, design_sessions, n_subject_images, n_shared, held_shared, grid,
                 image_size, forms, workers)
    out = Path(out).expanduser().absolute()
    truth_dir = Path(f"{out}_groundtruth")
    for d in (out, truth_dir):
        if d.exists() and (not d.is_dir() or any(d.iterdir())):
            raise UsageError("output folder exists and is not empty (use a new folder or --overwrite)", d)
    tmp_root, tmp_truth = out.with_name(out.name + ".partial"), truth_dir.with_name(truth_dir.name + ".partial")
    for t in (tmp_root, tmp_truth):
        if t.exists():
            shutil.rmtree(t)
        t.mkdir(parents=True)

    design = make_design(np.random.default_rng([seed, 3]), n_sessions, trials_per_session, design_sessions,
                         n_subject_images, n_shared, held_shared)
    all_features = np.random.default_rng([seed, 2]).standard_normal((design.n_images, N_FEATURES), dtype=np.float32)
    mask, streams, general = brain_and_streams(grid)
    general_index, weights, noise_sd, position = voxel_model(seed, streams, general, mask)
    brain = np.flatnonzero(mask.ravel())
    affine = nsd_affine()
    written_trials = n_sessions * trials_per_session
    trial_ids = design.subjectim[0, design.masterordering[:written_trials] - 1]

    beta_dir = tmp_root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
    beta_dir.mkdir(parents=True)
    state = {"seed": seed, "grid": grid, "folder": str(beta_dir), "weights": weights, "position": position,
             "noise_sd": noise_sd, "forms": forms, "affine": affine,
             "fortran": np.ravel_multi_index(np.unravel_index(brain, grid), grid, order="F").astype(np.int64)}
    jobs = [(n, all_features[trial_ids[(n - 1) * trials_per_session:n * trials_per_session] - 1])
            for n in range(1, n_sessions + 1)]
    pool = None
    futures = []
    if workers > 1:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(state,))
        futures = [pool.submit(_write_session, n, f) for n, f in jobs]
    try:
        # meanwhile, everything else (in this process)
        pp = tmp_root / "nsddata" / "ppdata" / "subj01"
        _save(mask.astype(np.int16), affine, pp / "func1pt8mm" / "brainmask.nii.gz")
        _save(streams, affine, pp / "func1pt8mm" / "roi" / "streams.nii.gz")
        _save(general, affine, pp / "func1pt8mm" / "roi" / "nsdgeneral.nii.gz")
        labels = tmp_root / "nsddata" / "freesurfer" / "fsaverage" / "label"
        labels.mkdir(parents=True)
        (labels / "streams.mgz.ctab").write_text("".join(f"{k} {v} {40 * k % 256} {90 * k % 256} {150 * k % 256} 0\n"
                                                         for k, v in STREAMS.items()))
        (labels / "nsdgeneral.mgz.ctab").write_text("0 Unknown 0 0 0 0\n1 nsdgeneral 255 0 0 0\n")
        (pp / "behav").mkdir(parents=True)
        responses_table(np.random.default_rng([seed, 4]), design, n_sessions, trials_per_session).to_csv(
            pp / "behav" / "responses.tsv", sep="\t", index=False, na_rep="NaN")
        experiments = tmp_root / "nsddata" / "experiments" / "nsd"
        experiments.mkdir(parents=True)
        savemat(experiments / "nsd_expdesign.mat", {
            "masterordering": design.masterordering.astype(float)[None, :],
            "subjectim": design.subjectim.astype(float), "sharedix": design.sharedix.astype(float)[None, :],
            "stimpattern": design.stimpattern.astype(float)}, do_compression=True)
        info = stim_info(np.random.default_rng([seed, 5]), design)
        info.to_csv(experiments / "nsd_stim_info_merged.csv")

        subject_ids = np.sort(design.subjectim[0])
        content = ContentModel.make(seed)
        stimuli = tmp_root / "nsddata_stimuli" / "stimuli" / "nsd"
        stimuli.mkdir(parents=True)
        texts = make_captions(all_features[subject_ids - 1], content, np.random.default_rng([seed, 6]))
        for year in ("train2017", "val2017"):
            rows = np.flatnonzero(info["cocoSplit"].to_numpy()[subject_ids - 1] == year)
            coco_captions_file(stimuli / "annotations" / f"captions_{year}.json",
                               {int(info["cocoId"].iat[subject_ids[r] - 1]): texts[r] for r in rows}, year)
        with h5py.File(stimuli / "nsd_stimuli.hdf5", "w") as handle:
            brick = handle.create_dataset("imgBrick", shape=(design.n_images, image_size, image_size, 3),
                                          dtype=np.uint8, chunks=(1, image_size, image_size, 3))
            step = 64
            for start in range(0, len(subject_ids), step):
                chunk = subject_ids[start:start + step]
                images = render_images(all_features[chunk - 1], content, image_size)
                for row, image in zip(chunk, images, strict=True):
                    brick[row - 1] = image
        np.savez(tmp_truth / "sub-01_nsdfull.npz", ids=subject_ids, features=all_features[subject_ids - 1],
                 weights=weights, nsdgeneral_index=general_index, nsdgeneral_labels=streams.ravel()[general_index],
                 brain_index=brain, noise_sd=noise_sd, nsdgeneral_position=position, grid=np.asarray(grid),
                 seed=seed, noise_scale=NSD_SCALE, trial_ids=trial_ids)
        session_files = []
        if pool is None:
            _init_worker(state)
            for n, f in jobs:
                session_files += _write_session(n, f)
            _WORKER.clear()
        else:
            for future in futures:
                session_files += future.result()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    sizes = {"betas": sum(Path(p).stat().st_size for p in session_files),
             "stimuli": (stimuli / "nsd_stimuli.hdf5").stat().st_size}
    sizes["total"] = sum(p.stat().st_size for p in tmp_root.rglob("*") if p.is_file())
    for final, t in ((out, tmp_root), (truth_dir, tmp_truth)):
        if final.exists():
            final.rmdir()  # empty (checked above)
        t.rename(final)
    shown = pd.Series(trial_ids).value_counts()
    counts = {"trials": written_trials, "brain": int(mask.sum()), "nsdgeneral": len(general_index),
              **{f"stream_{k}": int((streams == k).sum()) for k in range(1, 8)},
              "images": len(subject_ids), "images_total": design.n_images,
              "shared_in_sessions": int((shown.reindex(design.sharedix).fillna(0) == 3).sum())}
    return NsdFullDataset(out, truth_dir / "sub-01_nsdfull.npz", grid, image_size, n_sessions, trials_per_session,
                          counts, sizes, [out / Path(p).relative_to(tmp_root) for p in session_files])


__all__ = ["NsdFullDataset", "brain_and_streams", "make_design", "render_images", "session_betas", "write_nsd_full"]
