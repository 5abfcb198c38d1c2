"""A second simulation family for single-trial GLMs, built to disagree with the estimators' assumptions.

:mod:`bids_recon.sim.model` writes whole BIDS datasets whose generative model shares choices with
:mod:`bids_recon.glm` (double-gamma HRFs, cosine drift, shared noise recorded in the confounds). This module
makes session data directly as :func:`bids_recon.glm.fit_session` takes it (a list of
:class:`~bids_recon.glm.SessionRun` in percent signal change, built from raw intensities by the pipeline's own
:func:`~bids_recon.glm.percent_signal_change`), with a different generative model:

- **HRFs** from GLMsingle's 20 NSD-derived shapes (``hrf_family="glmsingle"``, packaged in
  ``bids_recon/data/hrf_library_glmsingle.tsv`` under its BSD-3 licence; bids_recon's default library since it
  proved better than our double gammas, so this family no longer disagrees with us), the same shapes stretched
  and delayed at random so that no library member fits exactly (``"glmsingle-warped"``), or inverse-logit HRFs
  (Lindquist & Wager 2007) with random rise, width and undershoot (``"logit"``); one per voxel, at random;
- **amplitudes** that vary strongly from trial to trial and change sign: per signal voxel
  ``gain * (mean + sd * z)`` with ``z`` standard normal, ``mean`` 1 and ``sd`` 1.4 (percent signal change);
  repeats of a stimulus share a fraction ``repeat_correlation`` of the variance of ``z`` (0: every trial is
  its own draw, so "predict a trial from its repeats" carries no information about single trials);
- **noise**: AR(1) per voxel (coefficient and sd vary across voxels), shared components with voxel-specific
  loadings in every voxel (Gaussian random walks and physiological-like quasi-periodic series, respiration
  ~0.3 Hz and cardiac ~1.1 Hz aliased by the TR, and a slow respiratory-volume-like series), none of them
  given to the estimator as confounds; polynomial drift per voxel (Legendre polynomials up to degree
  ``drift_degree``);
- **designs**: fixed or jittered onset spacing (on the TR grid by default, so that GLMsingle's TR-grid
  design sees the same onsets), 1-3 presentations of each stimulus spread over different runs.

Everything is plain numpy, seeded: ``simulate_event_session(spec, seed)`` returns the same data for the same
arguments. Ground truth: the single-trial amplitudes, each voxel's HRF (index and shape), the signal-voxel
mask and the number of shared noise components.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from bids_recon.glm.estimators import SessionRun
from bids_recon.glm.hrf import glmsingle_hrfs
from bids_recon.glm.singletrial import percent_signal_change

#: Sampling step (s) of the HRFs and event responses.
EVENT_DT = 0.1
#: Families of HRFs the simulator draws from.
HRF_FAMILIES = ("glmsingle", "glmsingle-warped", "logit")


@dataclass(frozen=True)
class EventSimSpec:
    """Design and generative parameters of one simulated session.

    Attributes
    ----------
    n_runs, n_volumes : int
        Runs in the session and volumes per run.
    repetition_time : float
        Seconds.
    soa : float
        Mean onset-to-onset interval (s).
    soa_jitter : float
        Extra interval drawn uniformly from ``[0, soa_jitter]`` s before every trial (the mean spacing is then
        ``soa + soa_jitter / 2``); 0 gives a fixed spacing.
    stim_duration : float
        Seconds.
    n_repeats : int
        Presentations of each stimulus in the session, in different runs where possible (1: no repeats).
    n_trials_per_run : int, optional
        Default: as many as fit between ``lead_in`` and ``tail`` seconds from the run's ends.
    lead_in, tail : float
        Seconds without trial onsets at the start and end of each run.
    onsets_on_grid : bool
        Round onsets to the TR grid (GLMsingle's designs are volumes).
    n_voxels : int
    signal_fraction : float
        Fraction of voxels with a task response.
    amplitude_mean, amplitude_sd : float
        Mean and trial-to-trial sd of the amplitudes (percent signal change, before the voxel's gain).
    gain_range : tuple of float
        Per-voxel gains (log-uniform) multiplying the amplitudes (sets the spread of SNR across voxels).
    repeat_correlation : float
        Correlation between the amplitudes of two presentations of the same stimulus (0-1).
    hrf_family : {"glmsingle", "glmsingle-warped", "logit"}
    n_random_walks, n_physio : int
        Shared noise components of each kind; :attr:`n_noise_components` is their sum (the slow
        respiratory-volume-like series counts as a physiological one).
    shared_noise_sd : float
        Sd (percent signal change) of the shared noise in a voxel with median loadings.
    noise_sd : float
        Median sd (percent signal change) of each voxel's AR(1) noise; voxels vary by a factor ~2 around it.
    ar1_range : tuple of float
        Range of the voxels' AR(1) coefficients.
    drift_sd : float
        Sd (percent signal change) of each polynomial drift term.
    drift_degree : int, optional
        Highest Legendre degree of the drift (default: round(run minutes / 2), GLMsingle's drift model; a higher
        degree adds drift that such a model leaves in the data, shared by all voxels like a noise component).
    baseline_range : tuple of float
        Range of the voxels' mean raw intensities.
    """

    n_runs: int = 2
    n_volumes: int = 200
    repetition_time: float = 1.5
    soa: float = 4.5
    soa_jitter: float = 0.0
    stim_duration: float = 3.0
    n_repeats: int = 2
    n_trials_per_run: int | None = None
    lead_in: float = 6.0
    tail: float = 18.0
    onsets_on_grid: bool = True
    n_voxels: int = 3000
    signal_fraction: float = 0.3
    amplitude_mean: float = 1.0
    amplitude_sd: float = 1.4
    gain_range: tuple[float, float] = (0.5, 2.0)
    repeat_correlation: float = 0.0
    hrf_family: str = "glmsingle"
    n_random_walks: int = 3
    n_physio: int = 2
    shared_noise_sd: float = 1.0
    noise_sd: float = 1.2
    ar1_range: tuple[float, float] = (0.2, 0.6)
    drift_sd: float = 1.0
    drift_degree: int | None = None
    baseline_range: tuple[float, float] = (400.0, 1600.0)

    @property
    def n_noise_components(self) -> int:
        return self.n_random_walks + self.n_physio

    def __post_init__(self) -> None:
        if self.hrf_family not in HRF_FAMILIES:
            raise ValueError(f"hrf_family must be one of {HRF_FAMILIES}, got {self.hrf_family!r}")
        if self.n_runs < 1 or self.n_volumes < 20 or self.n_voxels < 1:
            raise ValueError("need n_runs >= 1, n_volumes >= 20 and n_voxels >= 1")
        if not 0.0 <= self.repeat_correlation <= 1.0:
            raise ValueError(f"repeat_correlation must be in [0, 1], got {self.repeat_correlation}")
        if self.n_repeats < 1 or (self.n_runs > 1 and self.n_repeats > self.n_runs):
            raise ValueError(f"n_repeats ({self.n_repeats}) must be between 1 and n_runs ({self.n_runs})")
        if self.soa <= 0 or self.stim_duration < 0 or self.repetition_time <= 0:
            raise ValueError("soa and repetition_time must be positive and stim_duration non-negative")


@dataclass
class EventTruth:
    """Ground truth of a simulated session (voxel arrays over all ``n_voxels``).

    Attributes
    ----------
    amplitudes : ndarray, shape (n_trials, n_voxels), float32
        Peak response of each trial in percent signal change (0 outside signal voxels); trials stacked in run
        order, as :class:`~bids_recon.glm.SessionFit` stacks its betas.
    signal : ndarray of bool, shape (n_voxels,)
    hrf_index : ndarray of int, shape (n_voxels,)
        Index into ``hrfs`` of each voxel's HRF.
    hrfs : ndarray, shape (n_hrfs, n_samples)
        Impulse responses sampled every :data:`EVENT_DT` s.
    event_responses : ndarray, shape (n_hrfs, n_samples_event)
        Responses to one event of the design's duration, peak 1.
    hrf_peak : ndarray, shape (n_voxels,)
        Time (s) from onset to the peak of each voxel's event response.
    n_noise_components : int
        Shared noise components injected (random walks + physiological-like).
    stim_ids : ndarray of str, shape (n_trials,)
    run_of_trial : ndarray of int, shape (n_trials,)
    noise_sd : ndarray, shape (n_voxels,)
        Sd of each voxel's AR(1) noise (percent signal change).
    """

    amplitudes: np.ndarray
    signal: np.ndarray
    hrf_index: np.ndarray
    hrfs: np.ndarray
    event_responses: np.ndarray
    hrf_peak: np.ndarray
    n_noise_components: int
    stim_ids: np.ndarray
    run_of_trial: np.ndarray
    noise_sd: np.ndarray


@dataclass
class EventSimulation:
    """A simulated session: raw intensities per run, the trial design and the ground truth.

    ``raw`` runs are ``(n_volumes, n_voxels)`` float32 intensities (positive). :meth:`session_runs` makes
    fresh :class:`~bids_recon.glm.SessionRun` objects from them each time it is called (the estimators
    modify their data in place).
    """

    spec: EventSimSpec
    raw: list[np.ndarray]
    onsets: list[np.ndarray]
    stim_ids: list[np.ndarray]
    truth: EventTruth
    seed: int
    extra: dict = field(default_factory=dict)

    def session_runs(self) -> list[SessionRun]:
        """Runs in percent signal change (as :mod:`bids_recon.glm.runs` builds them from BOLD files)."""
        runs = []
        for raw, onsets, stims in zip(self.raw, self.onsets, self.stim_ids, strict=True):
            psc, _ = percent_signal_change(raw)
            runs.append(SessionRun(data=psc, onsets=onsets.copy(), durations=np.full(len(onsets),
                                   self.spec.stim_duration), stim_ids=stims.copy(),
                                   repetition_time=self.spec.repetition_time, confounds=None,
                                   mean_intensity=raw.mean(axis=0)))
        return runs

    def onset_volumes(self) -> list[np.ndarray]:
        """Onsets as volume indices (GLMsingle's design), rounded to the nearest volume."""
        return [np.round(o / self.spec.repetition_time).astype(int) for o in self.onsets]


#: Noise levels at which LSS reaches a median r of about 0.35 on the fast two-run design (as in issue 11's data).
_NOISY = dict(noise_sd=2.5, shared_noise_sd=2.0)

#: Named conditions of the benchmark sweep (``benchmarks/bench_glm.py --family eventsim``) and the tests.
EVENT_PRESETS: dict[str, EventSimSpec] = {
    # issue 11's first row: 2 runs x 200 TRs (TR 1.5 s), 3-s trials every 4.5 s, 2 repeats
    "fast-2run": EventSimSpec(**_NOISY),
    "fast-2run-noshared": EventSimSpec(**_NOISY, n_random_walks=0, n_physio=0),
    "nsd-like-6run": EventSimSpec(n_runs=6, n_volumes=226, repetition_time=1.333, soa=4.0, n_repeats=3,
                                  n_trials_per_run=62, hrf_family="glmsingle-warped", **_NOISY),
    "slow-jitter": EventSimSpec(n_runs=4, n_volumes=160, repetition_time=2.0, soa=8.0, soa_jitter=4.0,
                                stim_duration=2.0, hrf_family="logit", noise_sd=2.0, shared_noise_sd=1.5),
    "fast-tr0.8": EventSimSpec(n_runs=3, n_volumes=375, repetition_time=0.8, soa=4.0, stim_duration=1.0,
                               n_repeats=3, hrf_family="logit", noise_sd=3.0, shared_noise_sd=2.0),
    "single-presentation": EventSimSpec(n_runs=3, n_volumes=250, repetition_time=1.2, soa=4.0, soa_jitter=2.0,
                                        stim_duration=2.0, n_repeats=1, hrf_family="glmsingle-warped", **_NOISY),
    "reliable-repeats": EventSimSpec(n_runs=4, repeat_correlation=0.8, **_NOISY),
    "strong-physio": EventSimSpec(n_runs=4, n_volumes=300, repetition_time=1.0, soa=5.0, soa_jitter=3.0,
                                  stim_duration=2.0, n_repeats=3, n_random_walks=2, n_physio=4,
                                  shared_noise_sd=3.0, noise_sd=2.0, ar1_range=(0.4, 0.8), hrf_family="logit"),
    "many-components": EventSimSpec(n_runs=2, n_volumes=250, repetition_time=1.2, soa=4.0, n_random_walks=8,
                                    n_physio=2, shared_noise_sd=3.0, noise_sd=2.5),
    # issue 11's last row: an NSD-like session (benchmark only: 20k voxels)
    "nsd-session": EventSimSpec(n_runs=12, n_volumes=226, repetition_time=1.333, soa=4.0, n_repeats=3,
                                n_trials_per_run=62, n_voxels=20000, **_NOISY),
}


# ----------------------------------------------------------------------------------------------------------
# HRFs


def warped_glmsingle_hrfs(rng: np.random.Generator, n_hrfs: int = 40) -> np.ndarray:
    """GLMsingle's shapes, each stretched in time by 0.8-1.25 and delayed by -0.5 to 1 s: ``(n_hrfs, 501)``.

    The shapes lie between and beyond the library's members, so that an estimator using that library never
    finds the exact HRF.
    """
    base = glmsingle_hrfs()
    t = np.arange(base.shape[1]) * EVENT_DT
    out = []
    for _ in range(n_hrfs):
        h = base[rng.integers(len(base))]
        stretch, delay = np.exp(rng.uniform(np.log(0.8), np.log(1.25))), rng.uniform(-0.5, 1.0)
        warped = np.interp((t - delay) / stretch, t, h, left=0.0, right=0.0)
        out.append(warped / np.abs(warped).max())
    out = np.array(out)
    return out[np.argsort(np.argmax(out, axis=1), kind="stable")]


def logit_hrfs(rng: np.random.Generator, n_hrfs: int = 20, length: float = 50.0) -> np.ndarray:
    """Inverse-logit HRFs (Lindquist & Wager 2007) with random shapes: ``(n_hrfs, n_samples)``, peak 1.

    ``h(t) = L((t - T1) / D1) - (1 + u) L((t - T2) / D2) + u L((t - T3) / D3)`` with ``L`` the logistic
    function: a rise at ``T1``, a fall at ``T2`` into an undershoot of relative depth ``u`` and a recovery at
    ``T3``; sorted by time to peak.
    """
    t = np.arange(0.0, length + EVENT_DT / 2, EVENT_DT)

    def logistic(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))

    out = []
    for _ in range(n_hrfs):
        t1, d1 = rng.uniform(1.5, 4.0), rng.uniform(0.5, 1.3)
        t2, d2 = t1 + rng.uniform(2.0, 5.0), rng.uniform(0.8, 2.0)
        t3, d3 = t2 + rng.uniform(4.0, 10.0), rng.uniform(1.5, 4.0)
        u = rng.uniform(0.05, 0.4)
        h = logistic((t - t1) / d1) - (1 + u) * logistic((t - t2) / d2) + u * logistic((t - t3) / d3)
        h -= h[0] * np.exp(-t / 2.0)  # start at 0
        out.append(h / np.abs(h).max())
    out = np.array(out)
    return out[np.argsort(np.argmax(out, axis=1), kind="stable")]


def event_responses(hrfs: np.ndarray, duration: float) -> np.ndarray:
    """Responses to one event of ``duration`` s (box convolved with each HRF), each peaking at 1."""
    width = max(1, int(round(duration / EVENT_DT)))
    response = np.stack([np.convolve(h, np.ones(width)) for h in hrfs])
    return response / np.abs(response).max(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------------------
# design


def _design(spec: EventSimSpec, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Onsets (s) and stimulus ids per run; repeats of a stimulus go to different runs where possible."""
    run_length = spec.n_volumes * spec.repetition_time
    span = run_length - spec.lead_in - spec.tail
    mean_soa = spec.soa + spec.soa_jitter / 2
    n_per_run = spec.n_trials_per_run or int(np.floor(span / mean_soa)) + 1
    onsets = []
    for _ in range(spec.n_runs):
        gaps = spec.soa + rng.uniform(0, spec.soa_jitter, n_per_run - 1)
        o = spec.lead_in + np.concatenate([[0.0], np.cumsum(gaps)])
        if o[-1] > run_length - spec.tail:  # jitter ran long: squeeze back into the run
            o = spec.lead_in + (o - spec.lead_in) * span / (o[-1] - spec.lead_in)
        if spec.onsets_on_grid:
            o = np.round(o / spec.repetition_time) * spec.repetition_time
            o = np.maximum.accumulate(o)
            o[1:] = np.maximum(o[1:], o[:-1] + spec.repetition_time)  # never two trials on one volume
        onsets.append(o)
    total = n_per_run * spec.n_runs
    n_repeats = min(spec.n_repeats, spec.n_runs) if spec.n_runs > 1 else spec.n_repeats
    n_stimuli = int(np.ceil(total / n_repeats))
    capacity = np.full(spec.n_runs, n_per_run)
    slots: list[list[int]] = [[] for _ in range(spec.n_runs)]
    remaining = total
    for stim in rng.permutation(n_stimuli):
        k = min(n_repeats, remaining)
        if k <= 0:
            break
        free = np.flatnonzero(capacity > 0)
        order = free[np.lexsort((rng.random(len(free)), -capacity[free]))]  # emptiest runs first
        chosen = order[:k] if len(order) >= k else np.concatenate([order, rng.choice(order, k - len(order))])
        for run in chosen:
            slots[run].append(stim)
            capacity[run] -= 1
        remaining -= k
    stim_ids = [np.array([f"stim{s:05d}" for s in rng.permutation(s_run)]) for s_run in slots]
    return onsets, stim_ids


# ----------------------------------------------------------------------------------------------------------
# noise


def _ar1(rng: np.random.Generator, n: int, rho: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """AR(1) series ``(n, V)`` with coefficients ``rho`` and marginal sds ``sd`` (stationary start)."""
    from scipy.signal import lfilter

    white = rng.standard_normal((n, len(rho)))
    out = np.empty_like(white)
    rounded = np.round(rho, 2)
    for value in np.unique(rounded):
        cols = np.flatnonzero(rounded == value)
        innovation = np.sqrt(1 - value**2)
        drive = white[:, cols].copy()
        drive[0] /= innovation  # the first sample has the stationary sd
        out[:, cols] = lfilter([innovation], [1, -value], drive, axis=0)
    return out * sd[None, :]


def _shared_series(rng: np.random.Generator, spec: EventSimSpec) -> np.ndarray:
    """Standardised shared noise series of one run: ``(n_volumes, n_noise_components)``."""
    n, tr = spec.n_volumes, spec.repetition_time
    t = np.arange(n) * tr
    series = []
    for _ in range(spec.n_random_walks):
        series.append(np.cumsum(rng.standard_normal(n)))
    for k in range(spec.n_physio):
        kind = k % 3
        if kind == 2:  # slow respiratory-volume-like: smoothed noise around 0.03 Hz
            x = np.convolve(rng.standard_normal(n + 60), np.hanning(max(3, int(round(15 / tr)))), mode="same")
            series.append(x[30:30 + n])
            continue
        base = 0.3 if kind == 0 else 1.1
        freq = base * (1 + 0.1 * np.cumsum(rng.standard_normal(len(t))) / np.sqrt(len(t)))
        phase = 2 * np.pi * np.cumsum(freq) * tr  # sampled once per TR: aliased as on a scanner
        envelope = 1 + 0.3 * np.sin(2 * np.pi * t / rng.uniform(40, 90) + rng.uniform(0, 2 * np.pi))
        series.append(envelope * np.sin(phase + rng.uniform(0, 2 * np.pi)))
    if not series:
        return np.zeros((n, 0))
    x = np.column_stack(series)
    x = x - x.mean(axis=0)
    return x / x.std(axis=0)


def _legendre_drift(n: int, degree: int) -> np.ndarray:
    """Legendre polynomials of degrees 1..degree on [-1, 1]: ``(n, degree)``."""
    x = np.linspace(-1, 1, n)
    return np.column_stack([np.polynomial.legendre.Legendre.basis(d)(x) for d in range(1, degree + 1)]) \
        if degree else np.zeros((n, 0))


# ----------------------------------------------------------------------------------------------------------
# the session


def simulate_event_session(spec: EventSimSpec | None = None, seed: int = 0, **overrides) -> EventSimulation:
    """Simulate one session (see the module docstring for the model).

    Parameters
    ----------
    spec : EventSimSpec, optional
        Default: ``EventSimSpec()`` (2 runs x 200 volumes, TR 1.5 s, 3-s trials every 4.5 s, 2 repeats).
    seed : int
    **overrides
        Fields of :class:`EventSimSpec` to change.

    Returns
    -------
    EventSimulation
    """
    spec = replace(spec or EventSimSpec(), **overrides)
    rng = np.random.default_rng(seed)
    n_vox, n, tr = spec.n_voxels, spec.n_volumes, spec.repetition_time

    hrfs = {"glmsingle": glmsingle_hrfs, "glmsingle-warped": lambda: warped_glmsingle_hrfs(rng),
            "logit": lambda: logit_hrfs(rng)}[spec.hrf_family]()
    responses = event_responses(hrfs, spec.stim_duration)
    hrf_index = rng.integers(0, len(hrfs), n_vox)
    hrf_peak = np.argmax(responses, axis=1)[hrf_index] * EVENT_DT

    signal = np.zeros(n_vox, dtype=bool)
    signal[rng.choice(n_vox, int(round(spec.signal_fraction * n_vox)), replace=False)] = True
    lo, hi = np.log(spec.gain_range[0]), np.log(spec.gain_range[1])
    gain = np.where(signal, np.exp(rng.uniform(lo, hi, n_vox)), 0.0)

    onsets, stim_ids = _design(spec, rng)
    all_stims = np.concatenate(stim_ids)
    unique, inverse = np.unique(all_stims, return_inverse=True)
    shared_z = rng.standard_normal((len(unique), n_vox))
    trial_z = rng.standard_normal((len(all_stims), n_vox))
    rho = spec.repeat_correlation
    z = np.sqrt(rho) * shared_z[inverse] + np.sqrt(1 - rho) * trial_z
    amplitudes = (gain[None, :] * (spec.amplitude_mean + spec.amplitude_sd * z)).astype(np.float32)

    noise_sd = spec.noise_sd * np.exp(rng.uniform(np.log(0.6), np.log(1.6), n_vox))
    ar1 = rng.uniform(*spec.ar1_range, n_vox)
    loadings = rng.standard_normal((spec.n_noise_components, n_vox))
    loadings *= np.exp(rng.normal(0, 0.5, n_vox))[None, :]  # some voxels much noisier than others
    loadings *= spec.shared_noise_sd / np.sqrt(max(spec.n_noise_components, 1))
    minutes = n * tr / 60
    degree = spec.drift_degree if spec.drift_degree is not None else int(np.floor(minutes / 2 + 0.5))
    baseline = rng.uniform(*spec.baseline_range, n_vox)

    raw, row = [], 0
    frame_times = np.arange(n) * tr
    for r in range(spec.n_runs):
        rows = np.arange(row, row + len(onsets[r]))
        row += len(onsets[r])
        lag = frame_times[:, None] - onsets[r][None, :]  # (n, n_trials)
        index = np.clip(np.round(lag / EVENT_DT).astype(int), 0, responses.shape[1] - 1)
        inside = (lag >= 0) & (lag < responses.shape[1] * EVENT_DT)
        bold = np.zeros((n, n_vox))
        active = np.flatnonzero(signal)
        for k in np.unique(hrf_index[active]):
            cols = active[hrf_index[active] == k]
            regressors = np.where(inside, responses[k][index], 0.0)  # (n, n_trials)
            bold[:, cols] = regressors @ amplitudes[rows][:, cols]
        bold += _ar1(rng, n, ar1, noise_sd)
        shared = _shared_series(rng, spec)
        if shared.shape[1]:
            bold += shared @ loadings
        drift = _legendre_drift(n, degree)
        if drift.shape[1]:
            bold += drift @ (spec.drift_sd * rng.standard_normal((drift.shape[1], n_vox)))
        raw.append((baseline[None, :] * (1 + bold / 100.0)).astype(np.float32))

    truth = EventTruth(
        amplitudes=amplitudes, signal=signal, hrf_index=hrf_index, hrfs=hrfs, event_responses=responses,
        hrf_peak=hrf_peak, n_noise_components=spec.n_noise_components, stim_ids=all_stims,
        run_of_trial=np.concatenate([np.full(len(o), r) for r, o in enumerate(onsets)]), noise_sd=noise_sd,
    )
    return EventSimulation(spec=spec, raw=raw, onsets=onsets, stim_ids=stim_ids, truth=truth, seed=seed)


def median_truth_correlation(betas: np.ndarray, truth: EventTruth) -> float:
    """Median over signal voxels of the Pearson r between estimated ``(n_trials, n_voxels)`` and true amplitudes."""
    voxels = np.flatnonzero(truth.signal)
    b = np.asarray(betas, dtype=np.float64)[:, voxels]
    a = truth.amplitudes[:, voxels].astype(np.float64)
    b = b - b.mean(axis=0)
    a = a - a.mean(axis=0)
    denom = np.sqrt((b**2).sum(axis=0) * (a**2).sum(axis=0))
    r = np.where(denom > 0, (a * b).sum(axis=0) / np.where(denom > 0, denom, 1.0), 0.0)
    return float(np.median(r))
