r"""Several simulated subjects at the level of single-trial betas, with a stimulus space they share.

:func:`simulate_multisubject` draws, in seconds and with numpy only, what shared-space (hyperalignment-style)
decoding needs: several subjects who saw the same ``n_shared`` images (of which the ``n_test`` test images) and
each their own ``n_unique`` images, NSD's way (every image ``n_repeats`` times, spread over the sessions), with their
own voxel counts, noise levels and session effects. :func:`write_nsd_multisubject` writes it as NSD's download root,
so that the pipeline's ``--dataset nsd`` betas route reads it.

Model
-----
All responses are in percent signal change; ``i`` indexes images, ``v`` a subject's voxels, ``k`` trials.

*Common stimulus space* (image-computable, the same for every subject)::

    U_early[i, j] = rf_j(image_i)                         j < n_common // 2    (template pRFs tiling the image)
    U_higher[i, j] = tanh(a_i @ G[:, j])                  a_i = [onehot(category_i), size_i, onehot(category_i) size_i]
    common = standardise_columns([U_early, U_higher])     (mean 0, sd 1 over the simulated images)

where ``rf_j`` is :func:`bids_recon.sim.model.rf_responses` of a Gaussian receptive field (centre on a jittered grid,
sd 0.06-0.16 of the width growing with eccentricity, luminance/red-green/blue-yellow colour weights) and ``size_i`` the
object size (standardised by the range :func:`bids_recon.sim.stimuli.make_stimuli` draws it from).

*Subject-specific stimulus space* of subject ``s`` (image-computable, drawn for each subject, not linear in the
common space)::

    S_s = standardise_columns([|rf'_j(image) - m_j|, tanh(b_i @ G'_s)])
    b_i = [onehot(category_i) x onehot(colour_i), onehot(category_i) (x_i - 0.5), onehot(category_i) (y_i - 0.5)]

*Responses.* Signal voxel ``v`` of subject ``s`` (a fraction ``signal_fraction`` of each ROI) mixes the common
space with weights ``w_v`` and its own space with weights ``u_v`` (early voxels: the 4 template units nearest the
voxel's own pRF centre, weighted by proximity, 30 % of them with a negative sign, and its 3 nearest own energy units;
higher voxels: Gaussian weights on the higher-visual units)::

    z_v = sqrt(1 - q) common @ w_v / sd(common @ w_v) + sqrt(q) S_s @ u_v / sd(S_s @ u_v)    q = subject_specific
    response[i, v] = sigma_v z_v[i] / sd(z_v),   sigma_v ~ U(0.5, 1.5) %

which is ``common @ weights[:, v] + S_s @ specific_weights[:, v]`` exactly (the truth arrays). Voxels without
signal have ``response = 0``.

*Single-trial betas* of trial ``k`` (image ``i_k``, session ``d_k``)::

    beta[k, v] = g[d_k, v] (evoked_v + response[i_k, v] + e[k, v]) + o[d_k, v]
    e ~ N(0, (sigma_v / ncsnr_v)^2),   ncsnr_v = clip(ncsnr_median exp(ncsnr_log_sd N(0, 1)), *ncsnr_range)
    g = exp(session_scale_sd N(0, 1)),  o ~ N(0, session_offset_sd^2),  evoked_v ~ N(1, 0.3) (>= 0.2)

so the single-trial noise-ceiling SNR (NSD's ncsnr, :func:`bids_recon.glm.reliability.noise_ceiling`) of a signal
voxel is ``ncsnr_v`` once each session is z-scored; voxels without signal have the median noise sd of the signal
voxels (lognormal spread 0.2). Sessions are on different days: ``o`` and ``g`` are the day's offset and gain, which
z-scoring each session removes (up to the session's mix of images).

Design
------
Like NSD's ``nsd_expdesign.mat``: one ``masterordering`` for all subjects over the columns of ``subjectim``; columns
``1..n_shared`` are the shared images (the same for everyone, sorted by id as ``sharedix``), the others each
subject's own. Each column is shown ``n_repeats`` times in different sessions (when ``n_repeats <= n_sessions``),
sessions chosen least-loaded first for the test, other shared, and own images separately, so that every session holds
a mix of all three and the test images appear in every session (decoding trained on the first sessions can be tested
on all test trials). The order is shuffled within each session, runs hold about 60 trials. Stimulus ids are NSD-like
1-based ``73k`` ids (``stim_id`` ``'1'``..): the roles of the ids are shuffled. Sessions are labelled ``nsd01``..,
as the ``nsd`` importer names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import UsageError
from bids_recon.sim.model import rf_responses
from bids_recon.sim.stimuli import CATEGORIES, COLOURS, make_stimuli

#: Trials per run (about; a session's trials are split into runs of nearly equal length).
RUN_LENGTH = 60
#: Object sizes :func:`make_stimuli` draws (uniform): used to standardise size with fixed constants.
_SIZE_RANGE = (0.2, 0.5)


@dataclass(frozen=True)
class MultiSubjectPreset:
    """Sizes and signal/noise settings of a multi-subject betas simulation.

    Attributes
    ----------
    name : str
        Preset name.
    n_subjects : int
        Subjects.
    n_sessions : int
        Sessions per subject (each a different day: its own offsets and gains).
    n_shared : int
        Images every subject sees (NSD's shared images; ``subjectim``'s first columns, ``sharedix``).
    n_test : int
        Of the shared images, the test set (``split == 'test'``; ``shared1000`` in the written stim info).
    n_unique : int
        Images each subject sees that no other subject sees.
    n_repeats : int
        Presentations of every image (NSD: 3), test images and others alike.
    image_size : int
        Width and height of the square images (px).
    n_common : int
        Dimensions of the common stimulus space (half template pRF units, half higher-visual units).
    voxels : tuple of int
        ``(min, max)`` voxels of each ROI of each subject: each subject draws its own counts (uniform integers).
    subject_specific : float
        Fraction (0-1) of a signal voxel's stimulus-driven variance that comes from the subject's own stimulus space.
    signal_fraction : float
        Fraction of each ROI's voxels that carry stimulus-specific signal.
    session_offset_sd : float
        Sd (% signal change) of each session's additive offset per voxel.
    session_scale_sd : float
        Log-sd of each session's multiplicative gain per voxel.
    ncsnr_median, ncsnr_log_sd : float
        Single-trial noise-ceiling SNR of signal voxels: lognormal with this median and log-sd (DESIGN.md: median
        near 0.4, mostly 0.2-0.8) ...
    ncsnr_range : tuple of float
        ... clipped to this range.
    response_sd_range : tuple of float
        Uniform range of a signal voxel's response sd over images (% signal change).
    n_specific : int
        Dimensions of each subject's own stimulus space (0: ``n_common``).
    grid : tuple of int
        The volume grid the NSD writer places voxels on (1.8 mm voxels); the brains (ellipsoids, a little different
        per subject) must hold both ROIs.
    """

    name: str
    n_subjects: int = 5
    n_sessions: int = 8
    n_shared: int = 300
    n_test: int = 60
    n_unique: int = 600
    n_repeats: int = 3
    image_size: int = 32
    n_common: int = 64
    voxels: tuple[int, int] = (400, 700)
    subject_specific: float = 0.2
    signal_fraction: float = 0.6
    session_offset_sd: float = 1.0
    session_scale_sd: float = 0.1
    ncsnr_median: float = 0.4
    ncsnr_log_sd: float = 0.3
    ncsnr_range: tuple[float, float] = (0.15, 1.0)
    response_sd_range: tuple[float, float] = (0.5, 1.5)
    n_specific: int = 0
    grid: tuple[int, int, int] = (28, 32, 28)

    @property
    def n_stimuli(self) -> int:
        """Distinct images of the whole simulation."""
        return self.n_shared + self.n_subjects * self.n_unique

    @property
    def trials_per_subject(self) -> int:
        return (self.n_shared + self.n_unique) * self.n_repeats

    def with_overrides(self, **overrides: object) -> MultiSubjectPreset:
        """A copy with some fields replaced (:class:`UsageError` for an unknown name or inconsistent sizes)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(f"unknown multi-subject setting(s) {unknown}; known: {sorted(known)}")
        for key in ("voxels", "grid", "ncsnr_range", "response_sd_range"):
            if key in overrides:
                overrides[key] = tuple(overrides[key])  # type: ignore[arg-type]
        out = replace(self, **overrides)  # type: ignore[arg-type]
        out.check()
        return out

    def check(self) -> None:
        """Refuse sizes the design cannot hold."""
        problems = []
        if min(self.n_subjects, self.n_sessions, self.n_repeats, self.image_size, self.n_common) < 1:
            problems.append("n_subjects, n_sessions, n_repeats, image_size and n_common must be >= 1")
        if not 1 <= self.n_test <= self.n_shared:
            problems.append("need 1 <= n_test <= n_shared")
        if self.n_unique < 0:
            problems.append("n_unique must be >= 0")
        if not 1 <= self.voxels[0] <= self.voxels[1]:
            problems.append("voxels must be (min, max) with 1 <= min <= max")
        if not 0.0 <= self.subject_specific <= 1.0 or not 0.0 < self.signal_fraction <= 1.0:
            problems.append("subject_specific must be in [0, 1] and signal_fraction in (0, 1]")
        if self.n_test * self.n_repeats < self.n_sessions:
            problems.append(f"{self.n_test} test images x {self.n_repeats} cannot appear in all {self.n_sessions} "
                            "sessions")
        if problems:
            raise UsageError(f"multi-subject preset {self.name!r}: " + "; ".join(problems))


MULTI_PRESETS: dict[str, MultiSubjectPreset] = {
    "tiny": MultiSubjectPreset(name="tiny", n_subjects=3, n_sessions=3, n_shared=60, n_test=12, n_unique=60,
                               n_repeats=3, image_size=16, n_common=16, voxels=(80, 140), grid=(18, 20, 18)),
    "small": MultiSubjectPreset(name="small"),
}
"""``tiny``: for tests (well under a second); ``small``: the benchmark size (5 subjects x 8 sessions)."""


# -- the stimulus spaces ----------------------------------------------------------------------------------------------


def image_attributes(images: np.ndarray, stim_table: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
    """What the higher-visual units see: category one-hot (n, 8), colour one-hot (n, 6), size, x, y.

    From ``stim_table`` (``category``, ``colour``, ``size``, ``x``, ``y``) when given; otherwise estimated from the
    pixels (the object: pixels far from the median border colour; its area, centroid and mean colour) with an
    unknown category (one-hot 1/8 each), so that any image gets a response.
    """
    n = len(images)
    cats = np.asarray(CATEGORIES)
    names = list(COLOURS)
    if stim_table is not None:
        cat = (stim_table["category"].to_numpy()[:, None] == cats[None, :]).astype(float)
        col = (stim_table["colour"].to_numpy()[:, None] == np.asarray(names)[None, :]).astype(float)
        return {"category": cat, "colour": col, "size": stim_table["size"].to_numpy(float),
                "x": stim_table["x"].to_numpy(float), "y": stim_table["y"].to_numpy(float)}
    img = np.asarray(images, dtype=np.float64)
    h, w = img.shape[1:3]
    yy, xx = np.mgrid[0:h, 0:w]
    # the background: a plane per colour channel fitted to the border pixels (the shading is a linear gradient)
    edge = np.zeros((h, w), dtype=bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    design = np.column_stack([np.ones(h * w), (xx.ravel() + 0.5) / w - 0.5, (yy.ravel() + 0.5) / h - 0.5])
    coef = np.linalg.lstsq(design[edge.ravel()], img.reshape(n, h * w, 3)[:, edge.ravel()].transpose(1, 0, 2)
                           .reshape(int(edge.sum()), -1), rcond=None)[0]  # (3, n * 3)
    bg = (design @ coef).reshape(h, w, n, 3).transpose(2, 0, 1, 3)
    obj = np.abs(img - bg).sum(-1) > 0.25
    area = obj.reshape(n, -1).mean(1)
    size = np.sqrt(4 * area / np.pi)
    count = np.maximum(obj.reshape(n, -1).sum(1), 1)
    x = np.where(area > 0, (obj * (xx + 0.5) / w).reshape(n, -1).sum(1) / count, 0.5)
    y = np.where(area > 0, (obj * (yy + 0.5) / h).reshape(n, -1).sum(1) / count, 0.5)
    mean_rgb = (obj[..., None] * img).reshape(n, -1, 3).sum(1) / count[:, None]
    palette = np.asarray(list(COLOURS.values()), dtype=float) / 255.0
    nearest = np.argmin(((mean_rgb[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
    col = np.eye(len(names))[nearest] * (area > 0)[:, None]
    return {"category": np.full((n, len(cats)), 1.0 / len(cats)), "colour": col, "size": size, "x": x, "y": y}


@dataclass
class UnitBank:
    """Image-computable units: template pRFs (linear or rectified) and tanh units of image attributes.

    ``values(images, attrs)`` gives ``(raw - mean) / sd`` with ``mean``, ``sd`` fixed on the simulation's images
    (:meth:`fit`), so new images get responses on the same scale.
    """

    prf: np.ndarray  # (n_prf, 3): centre x, y and sd (fractions of the image width/height)
    rgb: np.ndarray  # (n_prf, 3)
    rectify: bool  # True: |rf - centre|
    centre: np.ndarray  # (n_prf,) rf mean on the simulation's images (used when rectify)
    g: np.ndarray  # (n_attr, n_higher)
    kind: str  # 'common' (category, size, category x size) or 'specific' (category x colour, category x position)
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sd: np.ndarray = field(default_factory=lambda: np.ones(0))

    @property
    def n_early(self) -> int:
        return len(self.prf)

    def _attr(self, attrs: dict[str, np.ndarray]) -> np.ndarray:
        cat = attrs["category"]
        if self.kind == "common":
            lo, hi = _SIZE_RANGE
            size = ((attrs["size"] - (lo + hi) / 2) / ((hi - lo) / np.sqrt(12)))[:, None]
            return np.concatenate([cat, size, cat * size], axis=1)
        cross = (cat[:, :, None] * attrs["colour"][:, None, :]).reshape(len(cat), -1)
        return np.concatenate([cross, 4 * cat * (attrs["x"] - 0.5)[:, None], 4 * cat * (attrs["y"] - 0.5)[:, None]],
                              axis=1)

    def raw(self, images: np.ndarray, attrs: dict[str, np.ndarray]) -> np.ndarray:
        early = rf_responses(images, self.prf[:, 0], self.prf[:, 1], self.prf[:, 2], self.rgb)
        if self.rectify:
            early = np.abs(early - self.centre[None, :])
        higher = np.tanh(self._attr(attrs) @ self.g)
        return np.concatenate([early, higher], axis=1)

    def fit(self, images: np.ndarray, attrs: dict[str, np.ndarray]) -> np.ndarray:
        """Fix the centres and the standardisation on ``images``; return their standardised values."""
        if self.rectify:
            self.centre = rf_responses(images, self.prf[:, 0], self.prf[:, 1], self.prf[:, 2], self.rgb).mean(0)
        raw = self.raw(images, attrs)
        self.mean = raw.mean(0)
        self.sd = raw.std(0) + 1e-12
        return (raw - self.mean) / self.sd

    def values(self, images: np.ndarray, attrs: dict[str, np.ndarray]) -> np.ndarray:
        return (self.raw(images, attrs) - self.mean) / self.sd


def _colour_weights(rng: np.random.Generator, n: int, luminance: float = 1.0) -> np.ndarray:
    lum = rng.normal(luminance, 0.2, n)
    rg = rng.normal(0.0, 0.6, n)
    by = rng.normal(0.0, 0.6, n)
    return (lum[:, None] * np.array([1 / 3, 1 / 3, 1 / 3]) + rg[:, None] * np.array([1.0, -1.0, 0.0])
            + by[:, None] * np.array([-0.5, -0.5, 1.0]))


def _make_bank(rng: np.random.Generator, n_units: int, kind: str) -> UnitBank:
    n_early = n_units // 2
    n_higher = n_units - n_early
    if kind == "common":  # a jittered grid tiling the image
        side = int(np.ceil(np.sqrt(max(n_early, 1))))
        cells = np.stack(np.meshgrid((np.arange(side) + 0.5) / side, (np.arange(side) + 0.5) / side), -1)
        cells = cells.reshape(-1, 2)[rng.permutation(side * side)[:n_early]]
        xy = np.clip(cells + rng.normal(0, 0.25 / side, cells.shape), 0.05, 0.95)
    else:
        xy = rng.uniform(0.08, 0.92, (n_early, 2))
    ecc = np.hypot(xy[:, 0] - 0.5, xy[:, 1] - 0.5) / np.sqrt(0.5)
    sigma = np.clip(0.06 + 0.10 * ecc + 0.01 * rng.standard_normal(n_early), 0.04, 0.2)
    prf = np.column_stack([xy, sigma])
    rgb = _colour_weights(rng, n_early, 1.0 if kind == "common" else 0.3)
    n_attr = 2 * len(CATEGORIES) + 1 if kind == "common" else len(CATEGORIES) * (len(COLOURS) + 2)
    g = rng.standard_normal((n_attr, n_higher)) / np.sqrt(3.0 if kind == "common" else 2.0)
    return UnitBank(prf, rgb, kind != "common", np.zeros(n_early), g, kind)


# -- the subjects -----------------------------------------------------------------------------------------------------


@dataclass
class SimSubject:
    """One simulated subject (arrays over its voxels, in the order of ``voxel_index``).

    Attributes
    ----------
    subject : str
        Label (``'01'``).
    trials : DataFrame
        One row per trial in presentation order: subject, session (``nsd01``..), session_index (1..), run
        (``'01'``..), trial_index (within the run, from 0), stim_id (str, 1-based 73k-like id), split
        (``train``/``test``), shared (bool), column (1-based ``subjectim`` column), repeat (0-based presentation).
    betas : ndarray, shape (n_trials, n_voxels), float32
        Single-trial betas (% signal change, session offsets and gains in: not z-scored).
    roi : ndarray of str, shape (n_voxels,)
        ``earlyvisual`` or ``highervisual``.
    weights : ndarray, shape (n_common, n_voxels)
        Truth: the response's common part is ``common @ weights`` (0 columns for voxels without signal).
    specific_weights : ndarray, shape (n_specific, n_voxels)
        Truth: its subject-specific part is ``specific @ specific_weights``.
    specific : ndarray, shape (n_stim, n_specific)
        Truth: the subject's own stimulus space on every image (rows as ``stim_table``).
    ncsnr : ndarray, shape (n_voxels,)
        Truth: target single-trial ncsnr (0 where no signal).
    signal : ndarray of bool, shape (n_voxels,)
    response_sd, evoked, noise_sd : ndarray, shape (n_voxels,)
        % signal change.
    session_offset, session_gain : ndarray, shape (n_sessions, n_voxels)
    mask : ndarray of bool, shape grid
        The brain mask (ROIs and other brain voxels) on the common grid.
    voxel_index : ndarray of int, shape (n_voxels,)
        Flat C-order index of each voxel in the grid (increasing).
    affine : ndarray, shape (4, 4)
    response : ndarray, shape (n_stim, n_voxels), float32
        Truth: noise-free responses to every image (``common @ weights + specific @ specific_weights``; no evoked
        part), what :meth:`MultiSubjectData.respond` gives for the same images.
    """

    subject: str
    trials: pd.DataFrame
    betas: np.ndarray
    roi: np.ndarray
    weights: np.ndarray
    specific_weights: np.ndarray
    specific: np.ndarray
    ncsnr: np.ndarray
    signal: np.ndarray
    response_sd: np.ndarray
    evoked: np.ndarray
    noise_sd: np.ndarray
    session_offset: np.ndarray
    session_gain: np.ndarray
    mask: np.ndarray
    voxel_index: np.ndarray
    affine: np.ndarray
    response: np.ndarray
    bank: UnitBank = field(repr=False, default=None)  # type: ignore[assignment]

    def _response_from(self, common: np.ndarray, specific: np.ndarray) -> np.ndarray:
        return common @ self.weights + specific @ self.specific_weights


@dataclass
class MultiSubjectData:
    """The images, their table, the common space and the subjects.

    Attributes
    ----------
    preset : MultiSubjectPreset
    seed : int
    images : ndarray, shape (n_stim, H, W, 3), float32 in [0, 1]
        Row ``i`` is ``stim_id`` ``str(i + 1)``.
    stim_table : DataFrame
        stim_id (str), stim_file (the simulator's PNG name, as its captions name it), shared, test (bool), owner
        (subject label; ``''`` for shared images), split, category, colour, background, x, y, size.
    captions : DataFrame
        stim_file, caption.
    common : ndarray, shape (n_stim, n_common)
        Truth: the common stimulus space (standardised columns).
    subjects : list of SimSubject
    common_bank : UnitBank
        How ``common`` is computed from images (for :meth:`respond`).
    """

    preset: MultiSubjectPreset
    seed: int
    images: np.ndarray
    stim_table: pd.DataFrame
    captions: pd.DataFrame
    common: np.ndarray
    subjects: list[SimSubject]
    common_bank: UnitBank = field(repr=False, default=None)  # type: ignore[assignment]

    def respond(self, subject_index: int, images: np.ndarray, rng: np.random.Generator | None = None, *,
                stim_table: pd.DataFrame | None = None, single_trial: bool = False) -> np.ndarray:
        """Responses (n_images, n_voxels) of one subject to new images, by the same generative model.

        Parameters
        ----------
        subject_index : int
            0-based index into :attr:`subjects`.
        images : ndarray, shape (n, H, W, 3)
            Pixels in [0, 1], the size of :attr:`images`.
        rng : numpy.random.Generator, optional
            Randomness of the single-trial noise (needed with ``single_trial``).
        stim_table : DataFrame, optional
            ``category``, ``colour``, ``size``, ``x``, ``y`` of the images (as :func:`make_stimuli` gives); without
            it they are estimated from the pixels with an unknown category (:func:`image_attributes`).
        single_trial : bool
            False: noise-free responses (``response``, no evoked part); True: single-trial betas as one z-scorable
            session would hold them without session effects (``evoked + response + noise``).
        """
        sub = self.subjects[subject_index]
        images = np.asarray(images, dtype=np.float32)
        attrs = image_attributes(images, stim_table)
        out = sub._response_from(self.common_bank.values(images, attrs), sub.bank.values(images, attrs))
        if single_trial:
            if rng is None:
                raise UsageError("respond(single_trial=True) needs an rng")
            out = out + sub.evoked[None, :] + rng.standard_normal(out.shape) * sub.noise_sd[None, :]
        return out.astype(np.float32)

    def subject_labels(self) -> list[str]:
        return [s.subject for s in self.subjects]


# -- the design -------------------------------------------------------------------------------------------------------


def _assign_sessions(rng: np.random.Generator, columns: np.ndarray, n_repeats: int, n_sessions: int,
                     load: np.ndarray) -> list[tuple[int, int, int]]:
    """``(column, repeat, session)`` for every presentation of ``columns``: each column's repeats in the least-loaded
    distinct sessions (random ties), ``load`` updated in place."""
    out = []
    for c in rng.permutation(columns):
        order = np.argsort(load + rng.uniform(0, 0.5, n_sessions), kind="stable")
        if n_repeats <= n_sessions:
            chosen = np.sort(order[:n_repeats])
        else:
            chosen = np.sort(np.resize(order, n_repeats))
        for r, s in enumerate(chosen):
            out.append((int(c), r, int(s)))
            load[s] += 1
    return out


def make_design(rng: np.random.Generator, preset: MultiSubjectPreset) -> pd.DataFrame:
    """The shared ``masterordering``: one row per trial in order with ``column`` (1-based ``subjectim`` column),
    ``session_index`` (1-based), ``run`` (1-based), ``repeat``."""
    from bids_recon.sim.nsdfull import run_sizes

    n_cols = preset.n_shared + preset.n_unique
    test_cols = np.arange(1, preset.n_test + 1)
    shared_cols = np.arange(preset.n_test + 1, preset.n_shared + 1)
    own_cols = np.arange(preset.n_shared + 1, n_cols + 1)
    rows = []
    for cols in (test_cols, shared_cols, own_cols):
        rows += _assign_sessions(rng, cols, preset.n_repeats, preset.n_sessions, np.zeros(preset.n_sessions))
    table = pd.DataFrame(rows, columns=["column", "repeat", "session"])
    out = []
    for s in range(preset.n_sessions):
        part = table[table["session"] == s].sample(frac=1.0, random_state=rng.integers(2**32)).reset_index(drop=True)
        n_runs = max(1, int(round(len(part) / RUN_LENGTH)))
        sizes = run_sizes(len(part), min(n_runs, max(len(part), 1)))
        part["run"] = np.repeat(np.arange(1, len(sizes) + 1), sizes)
        part["session_index"] = s + 1
        out.append(part)
    design = pd.concat(out, ignore_index=True)
    design["repeat"] = design.groupby("column").cumcount()
    return design[["column", "session_index", "run", "repeat"]]


def _grid_positions(grid: tuple[int, int, int]) -> list[np.ndarray]:
    centre = (np.asarray(grid, dtype=float) - 1) / 2
    axes = np.meshgrid(*[np.arange(g) for g in grid], indexing="ij")
    return [(a - c) / c for a, c in zip(axes, centre, strict=True)]


def _place_voxels(rng: np.random.Generator, grid: tuple[int, int, int], n_early: int, n_higher: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A brain (ellipsoid, a little different per subject), its early ROI (nearest the occipital pole) and its
    higher ROI (nearest a ventral occipito-temporal point): ``(mask, early, higher)`` boolean grids."""
    u, v, w = _grid_positions(grid)
    stretch = rng.uniform(0.88, 0.96, 3)
    radius = np.sqrt((u / stretch[0]) ** 2 + (v / stretch[1]) ** 2 + (w / stretch[2]) ** 2)
    mask = radius <= 1.0
    flat = np.flatnonzero(mask.ravel())
    if n_early + n_higher > len(flat) // 2:
        raise UsageError(f"grid {'x'.join(map(str, grid))} holds a brain of {len(flat)} voxels: too few for ROIs of "
                         f"{n_early} + {n_higher} voxels (use a larger grid)")
    pos = np.stack([u.ravel()[flat], v.ravel()[flat], w.ravel()[flat]], 1)
    shift = rng.normal(0, 0.03, (2, 3))
    early_c = np.array([0.0, -0.82, 0.0]) + shift[0]
    higher_c = np.array([0.0, -0.35, -0.5]) + shift[1]
    d_early = np.sqrt((((pos - early_c) / [1.3, 0.7, 1.0]) ** 2).sum(1))
    early = np.zeros(len(flat), dtype=bool)
    early[np.argsort(d_early, kind="stable")[:n_early]] = True
    d_higher = np.sqrt((((pos - higher_c) / [1.4, 1.6, 0.6]) ** 2).sum(1))
    d_higher[early] = np.inf
    higher = np.zeros(len(flat), dtype=bool)
    higher[np.argsort(d_higher, kind="stable")[:n_higher]] = True
    out_early = np.zeros(mask.size, dtype=bool)
    out_higher = np.zeros(mask.size, dtype=bool)
    out_early[flat[early]] = True
    out_higher[flat[higher]] = True
    return mask, out_early.reshape(grid), out_higher.reshape(grid)


def _simulate_subject(preset: MultiSubjectPreset, seed: int, index: int, images: np.ndarray,
                      attrs: dict[str, np.ndarray], common: np.ndarray, common_bank: UnitBank, ids: np.ndarray,
                      design: pd.DataFrame, stim_table: pd.DataFrame) -> SimSubject:
    """One subject: voxels, weights, truth and betas (``ids``: the 1-based ids of its ``subjectim`` row)."""
    rng = np.random.default_rng([seed, 10, index])
    label = f"{index + 1:02d}"
    n_early, n_higher = (int(n) for n in rng.integers(preset.voxels[0], preset.voxels[1] + 1, 2))
    mask, early_grid, higher_grid = _place_voxels(rng, preset.grid, n_early, n_higher)
    voxel_index = np.flatnonzero((early_grid | higher_grid).ravel())
    is_early = early_grid.ravel()[voxel_index]
    n_vox = len(voxel_index)
    roi = np.where(is_early, "earlyvisual", "highervisual")

    n_specific = preset.n_specific or preset.n_common
    bank = _make_bank(rng, n_specific, "specific")
    specific = bank.fit(images, attrs)

    signal = np.zeros(n_vox, dtype=bool)
    for part in (is_early, ~is_early):
        idx = np.flatnonzero(part)
        signal[rng.choice(idx, int(round(preset.signal_fraction * len(idx))), replace=False)] = True

    ce, se = common_bank.n_early, bank.n_early
    w = np.zeros((preset.n_common, n_vox))
    u = np.zeros((n_specific, n_vox))
    centres = rng.uniform(0.08, 0.92, (n_vox, 2))
    for v in np.flatnonzero(signal):
        if is_early[v]:
            for weights, prf, n_keep in ((w, common_bank.prf, 4), (u, bank.prf, 3)):
                d2 = ((prf[:, :2] - centres[v]) ** 2).sum(1)
                near = np.argsort(d2)[:n_keep]
                weights[near, v] = np.exp(-d2[near] / (2 * 0.12**2)) * rng.uniform(0.5, 1.5, len(near))
                weights[near[rng.uniform(size=len(near)) < 0.3], v] *= -1  # some off-like weights
        else:
            w[ce:, v] = rng.standard_normal(preset.n_common - ce)
            u[se:, v] = rng.standard_normal(n_specific - se)
    q = preset.subject_specific
    zc = common @ w
    zs = specific @ u
    sc = zc.std(0) + 1e-12
    ss = zs.std(0) + 1e-12
    mix = np.sqrt(1 - q) * zc / sc + np.sqrt(q) * zs / ss
    sm = mix.std(0) + 1e-12
    response_sd = np.zeros(n_vox)
    response_sd[signal] = rng.uniform(*preset.response_sd_range, int(signal.sum()))
    gain = np.where(signal, response_sd / sm, 0.0)
    weights = w * (np.sqrt(1 - q) / sc * gain)[None, :]
    specific_weights = u * (np.sqrt(q) / ss * gain)[None, :]
    response = common @ weights + specific @ specific_weights

    ncsnr = np.zeros(n_vox)
    ncsnr[signal] = np.clip(preset.ncsnr_median * np.exp(preset.ncsnr_log_sd * rng.standard_normal(int(signal.sum()))),
                            *preset.ncsnr_range)
    noise_sd = np.zeros(n_vox)
    noise_sd[signal] = response_sd[signal] / ncsnr[signal]
    median_noise = float(np.median(noise_sd[signal])) if signal.any() else 2.0
    noise_sd[~signal] = median_noise * np.exp(0.2 * rng.standard_normal(int((~signal).sum())))
    evoked = np.clip(rng.normal(1.0, 0.3, n_vox), 0.2, None)
    offset = rng.normal(0.0, preset.session_offset_sd, (preset.n_sessions, n_vox))
    session_gain = np.exp(preset.session_scale_sd * rng.standard_normal((preset.n_sessions, n_vox)))

    stim_rows = ids[design["column"].to_numpy() - 1] - 1
    sess = design["session_index"].to_numpy() - 1
    noise = np.random.default_rng([seed, 11, index]).standard_normal((len(design), n_vox))
    betas = (evoked[None, :] + response[stim_rows] + noise * noise_sd[None, :]) * session_gain[sess] + offset[sess]

    trials = pd.DataFrame({
        "subject": label,
        "session": [f"nsd{s:02d}" for s in design["session_index"]],
        "session_index": design["session_index"].to_numpy(),
        "run": [f"{r:02d}" for r in design["run"]],
        "stim_id": stim_table["stim_id"].to_numpy()[stim_rows],
        "split": stim_table["split"].to_numpy()[stim_rows],
        "shared": stim_table["shared"].to_numpy()[stim_rows],
        "column": design["column"].to_numpy(),
        "repeat": design["repeat"].to_numpy(),
    })
    trials.insert(4, "trial_index", trials.groupby(["session", "run"], sort=False).cumcount().to_numpy())
    f32 = np.float32
    sub = SimSubject(label, trials, betas.astype(f32), roi, weights.astype(f32), specific_weights.astype(f32),
                     specific.astype(f32), ncsnr.astype(f32), signal, response_sd.astype(f32), evoked.astype(f32),
                     noise_sd.astype(f32), offset.astype(f32), session_gain.astype(f32), mask, voxel_index,
                     _affine(), response.astype(f32), bank)
    return sub


def _affine() -> np.ndarray:
    return np.diag([1.8, 1.8, 1.8, 1.0])


def simulate_multisubject(preset: str | MultiSubjectPreset = "small", seed: int = 0,
                          **overrides: object) -> MultiSubjectData:
    """Simulate several subjects' single-trial betas (see the module's text for the model and design).

    Parameters
    ----------
    preset : str or MultiSubjectPreset
        A name of :data:`MULTI_PRESETS` or a preset.
    seed : int
        Same seed (and settings), same data.
    **overrides
        Fields of :class:`MultiSubjectPreset` to replace.

    Returns
    -------
    MultiSubjectData
    """
    if isinstance(preset, str):
        if preset not in MULTI_PRESETS:
            raise UsageError(f"unknown multi-subject preset {preset!r}; known: {', '.join(MULTI_PRESETS)}")
        preset = MULTI_PRESETS[preset]
    preset = preset.with_overrides(**overrides)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    n_stim = preset.n_stimuli
    stim = make_stimuli(np.random.default_rng([seed, 0]), n_stim - preset.n_test, preset.n_test, preset.n_repeats,
                        preset.image_size)
    rng = np.random.default_rng([seed, 1])
    roles = rng.permutation(n_stim)  # roles[j]: the image row of role j (shared first, then each subject's own)
    shared_rows = np.sort(roles[:preset.n_shared])
    test_rows = np.sort(rng.choice(shared_rows, preset.n_test, replace=False))
    owner = np.full(n_stim, "", dtype=object)
    own_rows = []
    for s in range(preset.n_subjects):
        rows = np.sort(roles[preset.n_shared + s * preset.n_unique:preset.n_shared + (s + 1) * preset.n_unique])
        owner[rows] = f"{s + 1:02d}"
        own_rows.append(rows)
    table = stim.table.drop(columns=["split", "n_repeats"]).copy()
    table["stim_id"] = (np.arange(n_stim) + 1).astype(str)
    table["shared"] = np.isin(np.arange(n_stim), shared_rows)
    table["test"] = np.isin(np.arange(n_stim), test_rows)
    table["owner"] = owner
    table["split"] = np.where(table["test"], "test", "train")
    table = table[["stim_id", "stim_file", "shared", "test", "owner", "split", "category", "colour", "background",
                   "x", "y", "size"]]

    attrs = image_attributes(stim.images, table)
    common_bank = _make_bank(np.random.default_rng([seed, 2]), preset.n_common, "common")
    common = common_bank.fit(stim.images, attrs)
    design = make_design(np.random.default_rng([seed, 3]), preset)
    # subjectim columns: the test images, the other shared ones (sorted ids), then the subject's own
    other_shared = np.setdiff1d(shared_rows, test_rows)
    subjects = []
    for s in range(preset.n_subjects):
        ids = np.concatenate([test_rows, other_shared, own_rows[s]]) + 1
        subjects.append(_simulate_subject(preset, seed, s, stim.images, attrs, common, common_bank, ids, design,
                                          table))
    return MultiSubjectData(preset, seed, stim.images, table, stim.captions, common.astype(np.float32), subjects,
                            common_bank)


def subjectim(data: MultiSubjectData) -> np.ndarray:
    """``(n_subjects, n_shared + n_unique)`` 1-based ids of each subject's ``subjectim`` columns."""
    p = data.preset
    out = np.zeros((p.n_subjects, p.n_shared + p.n_unique), dtype=np.int64)
    for s, sub in enumerate(data.subjects):
        cols = sub.trials["column"].to_numpy()
        out[s, cols - 1] = sub.trials["stim_id"].astype(int).to_numpy()
    return out


# -- z-scoring and ncsnr helpers (numpy) ------------------------------------------------------------------------------


# -- the NSD writer ---------------------------------------------------------------------------------------------------


def write_nsd_multisubject(root: Path, data: MultiSubjectData) -> None:
    """Write ``data`` as NSD's download root ``root`` (every subject), as NSD publishes it.

    - ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``: ``imgBrick`` (n_stim x H x W x 3 uint8), row ``id - 1``;
      ``annotations/captions_{train,val}2017.json`` (COCO layout, the simulator's captions);
    - ``nsddata/experiments/nsd/nsd_stim_info_merged.csv``: ``cocoId``, ``cocoSplit``, ``nsdId`` (0-based),
      ``shared1000`` (= the **test** images), ``subjectN`` and ``subjectN_repK`` (1-based trial of presentation K);
    - ``nsddata/experiments/nsd/nsd_expdesign.mat``: ``masterordering`` (shared by all subjects), ``subjectim``
      (n_subjects rows), ``sharedix`` (all shared images), ``stimpattern`` (sessions x runs x slots);
    - per subject ``subjNN``: ``nsddata_betas/ppdata/subjNN/func1pt8mm/betas_fithrf_GLMdenoise_RR/
      betas_sessionNN.nii.gz`` (int16 = % x 300; brain voxels outside the ROIs hold noise of the median noise sd),
      ``nsddata/ppdata/subjNN/func1pt8mm/brainmask.nii.gz``, ``roi/streams.nii.gz`` (early = 1, ventral = 5),
      ``roi/nsdgeneral.nii.gz``, ``behav/responses.tsv``; ``nsddata/freesurfer/fsaverage/label/*.ctab``.
    """
    import h5py
    from scipy.io import savemat

    from bids_recon.sim.betas import BetaSet, write_nsd, write_nsd_rois
    from bids_recon.sim.layouts import coco_captions_file

    root = Path(root)
    p = data.preset
    n_stim = len(data.images)
    design_trials = data.subjects[0].trials
    order = design_trials["column"].to_numpy()
    ims = subjectim(data)
    rng = np.random.default_rng([data.seed, 20])
    for sub in data.subjects:
        n_brain = int(sub.mask.sum())
        brain = np.flatnonzero(sub.mask.ravel())
        in_roi = np.searchsorted(brain, sub.voxel_index)
        fill_sd = float(np.median(sub.noise_sd))
        outside = np.ones(n_brain, dtype=bool)
        outside[in_roi] = False
        sets_betas, sets_trials, sessions = [], [], []
        for number, rows in sub.trials.groupby("session_index", sort=True).indices.items():
            values = np.zeros((len(rows), n_brain), dtype=np.float32)
            values[:, in_roi] = sub.betas[rows]
            values[:, outside] = rng.standard_normal((len(rows), int(outside.sum()))) * fill_sd
            sets_betas.append(values)
            table = sub.trials.iloc[rows].reset_index(drop=True).copy()
            table["stim_file"] = table["stim_id"]
            sets_trials.append(table)
            sessions.append(f"nsd{number:02d}")
        beta_set = BetaSet(sub.subject, sessions, sets_betas, sets_trials, sub.mask, sub.affine)
        grid = sub.mask.shape
        early = np.zeros(int(np.prod(grid)), dtype=bool)
        ventral = np.zeros_like(early)
        early[sub.voxel_index[sub.roi == "earlyvisual"]] = True
        ventral[sub.voxel_index[sub.roi == "highervisual"]] = True
        write_nsd(root, [beta_set], forms=("nii",))
        write_nsd_rois(root, beta_set, early.reshape(grid), ventral.reshape(grid))

    # the design, NSD's way (write_nsd wrote a per-subject one: replaced by the shared masterordering)
    sizes = design_trials.groupby(["session_index", "run"], sort=True).size()
    n_runs = int(design_trials.groupby("session_index")["run"].nunique().max())
    slots = int(sizes.max()) + 2
    pattern = np.zeros((p.n_sessions, n_runs, slots), dtype=np.uint8)
    prng = np.random.default_rng([data.seed, 21])
    for (s, r), k in sizes.items():
        pattern[s - 1, int(r) - 1, 1 + np.sort(prng.choice(slots - 2, size=int(k), replace=False))] = 1
    experiments = root / "nsddata" / "experiments" / "nsd"
    experiments.mkdir(parents=True, exist_ok=True)
    sharedix = np.sort(ims[0, :p.n_shared])
    savemat(experiments / "nsd_expdesign.mat", {
        "masterordering": order.astype(float)[None, :], "subjectim": ims.astype(float),
        "sharedix": sharedix.astype(float)[None, :], "stimpattern": pattern.astype(float)}, do_compression=True)

    # stim info
    info_rng = np.random.default_rng([data.seed, 22])
    coco = np.sort(info_rng.choice(600_000, size=n_stim, replace=False) + 1)[info_rng.permutation(n_stim)]
    split = np.where(info_rng.uniform(size=n_stim) < 0.2, "val2017", "train2017")
    info = pd.DataFrame({"cocoId": coco, "cocoSplit": split, "cropBox": "(0, 0, 0.1, 0.1)", "loss": 0.0,
                         "nsdId": np.arange(n_stim), "flagged": False, "BOLD5000": False,
                         "shared1000": data.stim_table["test"].to_numpy()})
    for s in range(len(data.subjects)):
        flag = np.zeros(n_stim, dtype=int)
        flag[ims[s] - 1] = 1
        info[f"subject{s + 1}"] = flag
    for s, sub in enumerate(data.subjects):
        ids = sub.trials["stim_id"].astype(int).to_numpy()
        for k in range(p.n_repeats):
            column = np.zeros(n_stim, dtype=np.int64)
            at = np.flatnonzero(sub.trials["repeat"].to_numpy() == k)
            column[ids[at] - 1] = at + 1
            info[f"subject{s + 1}_rep{k}"] = column
    info.to_csv(experiments / "nsd_stim_info_merged.csv")

    stimuli = root / "nsddata_stimuli" / "stimuli" / "nsd"
    stimuli.mkdir(parents=True, exist_ok=True)
    with h5py.File(stimuli / "nsd_stimuli.hdf5", "w") as handle:
        handle.create_dataset("imgBrick", data=np.round(data.images * 255).astype(np.uint8),
                              chunks=(1, *data.images.shape[1:]))
    row_of = {f: i for i, f in enumerate(data.stim_table["stim_file"])}
    texts: dict[int, list[str]] = {}
    for name, caption in zip(data.captions["stim_file"], data.captions["caption"], strict=True):
        texts.setdefault(row_of[name], []).append(caption)
    for year in ("train2017", "val2017"):
        coco_captions_file(stimuli / "annotations" / f"captions_{year}.json",
                           {int(coco[r]): t for r, t in texts.items() if split[r] == year}, year)


def write_groundtruth(folder: Path, data: MultiSubjectData) -> None:
    """The truth beside the download root: ``common.npy``, ``stim_table.tsv``, ``sub-XX_truth.npz`` (weights,
    specific_weights, specific, ncsnr, signal, response_sd, evoked, noise_sd, session offsets and gains, roi,
    voxel_index) and ``sub-XX_trials.tsv``, and a README."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "common.npy", data.common)
    data.stim_table.to_csv(folder / "stim_table.tsv", sep="\t", index=False)
    for sub in data.subjects:
        np.savez(folder / f"sub-{sub.subject}_truth.npz", weights=sub.weights, specific_weights=sub.specific_weights,
                 specific=sub.specific, ncsnr=sub.ncsnr, signal=sub.signal, response_sd=sub.response_sd,
                 evoked=sub.evoked, noise_sd=sub.noise_sd, session_offset=sub.session_offset,
                 session_gain=sub.session_gain, roi=sub.roi.astype(str), voxel_index=sub.voxel_index,
                 grid=np.asarray(sub.mask.shape))
        sub.trials.to_csv(folder / f"sub-{sub.subject}_trials.tsv", sep="\t", index=False)
    (folder / "README.md").write_text(
        f"Ground truth of bids_recon-sim's multi-subject NSD stand-in (preset {data.preset.name}, seed {data.seed}).\n"
        "See bids_recon/sim/multisubject.py for the model. common.npy: (n_stim, n_common) common stimulus space, rows "
        "= 73k ids 1..n; stim_table.tsv: roles of the ids (shared, test = shared1000, owner); sub-XX_truth.npz: "
        "per-voxel truth over the ROI voxels (voxel_index: flat C index in the grid); response = common @ weights + "
        "specific @ specific_weights; sub-XX_trials.tsv: trials in order (session nsdNN, run, stim_id).\n")


__all__ = ["MULTI_PRESETS", "MultiSubjectData", "MultiSubjectPreset", "SimSubject", "image_attributes",
           "make_design", "simulate_multisubject", "subjectim", "write_groundtruth", "write_nsd_multisubject"]
