"""Libraries of haemodynamic response functions and single-trial regressors built from them.

The default library (:func:`default_library`) is GLMsingle's: 20 HRFs derived from NSD data by Prince et al.
(2022), the library that made NSD's ``betas_fithrf_GLMdenoise_RR``; its impulse responses peak 2.7 to 5.7 s
after onset (so 4.2 to 7.2 s for NSD's 3-s images), ordered from early (index 0, with a deep undershoot) to late
(index 19, no undershoot). The numbers are packaged in ``bids_recon/data/hrf_library_glmsingle.tsv`` with their
BSD-3 licence; they are resampled here from 0.1 s to :data:`FINE_DT` with a PCHIP interpolant, as GLMsingle
resamples them to the TR.

:func:`double_gamma_library` is the library of earlier versions: double gammas (the SPM/Glover form
``h(t) = g(t; a1, b) - c * g(t; a2, b)``) whose impulse responses peak 3.5 to 8.0 s after onset. That range was
meant to cover NSD's "4-7 s", which is the peak of the response to a 3-s image, not of the impulse response, so
it sat about 1.5 s too late and with one fixed width per latency; on data whose HRFs come from measured shapes
it chose HRFs that did not correlate with the true ones (see docs/benchmarks.md).

Every member is normalised so that its response to an event of the design's duration peaks at 1: a beta is then
the peak response in the data's units (percent signal change).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy import stats
from scipy.interpolate import PchipInterpolator

#: Sampling step (s) of the fine time grid on which HRFs and event responses are computed.
FINE_DT = 0.05
#: Length (s) of every HRF.
HRF_LENGTH = 32.0


@dataclass(frozen=True)
class HrfLibrary:
    """HRFs sampled every :data:`FINE_DT` s.

    Attributes
    ----------
    hrfs : ndarray, shape (n_hrfs, n_samples)
        Unit-peak impulse responses.
    time_to_peak : ndarray, shape (n_hrfs,)
        Seconds from onset to the maximum of each HRF.
    params : ndarray, shape (n_hrfs, 3), optional
        Peak delay, undershoot delay and undershoot ratio of each double gamma (None for measured shapes).
    name : str
        What the library is (recorded in the fit's ``info``).
    """

    hrfs: np.ndarray
    time_to_peak: np.ndarray
    params: np.ndarray | None = None
    name: str = ""

    def __len__(self) -> int:
        return len(self.hrfs)

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.hrfs.shape[1]) * FINE_DT


def double_gamma(t: np.ndarray, peak_delay: float, undershoot_delay: float, ratio: float,
                 dispersion: float = 0.9) -> np.ndarray:
    """Double-gamma impulse response at times ``t`` (s), peak normalised to 1.

    ``peak_delay`` and ``undershoot_delay`` are the gamma means (shape x scale), as in nilearn's Glover
    HRF (delay 6, undershoot 12, dispersion 0.9, ratio 0.35).
    """
    t = np.asarray(t, dtype=float)
    h = (stats.gamma.pdf(t, peak_delay / dispersion, scale=dispersion)
         - ratio * stats.gamma.pdf(t, undershoot_delay / dispersion, scale=dispersion))
    return h / np.max(np.abs(h))


#: Sampling step (s) of GLMsingle's library as packaged.
GLMSINGLE_DT = 0.1


def glmsingle_hrfs() -> np.ndarray:
    """GLMsingle's 20 impulse responses as packaged: ``(20, 501)``, every :data:`GLMSINGLE_DT` s from onset."""
    path = resources.files("bids_recon.data").joinpath("hrf_library_glmsingle.tsv")
    with resources.as_file(path) as file:
        return np.loadtxt(file).T


def default_library(n_hrfs: int = 20) -> HrfLibrary:
    """GLMsingle's NSD-derived library (see the module docstring), resampled to :data:`FINE_DT`, 32 s long.

    Parameters
    ----------
    n_hrfs : int
        20 for the whole library; fewer keeps evenly spaced members (for quick tests).
    """
    raw = glmsingle_hrfs()
    if not 1 <= n_hrfs <= len(raw):
        raise ValueError(f"n_hrfs must be between 1 and {len(raw)}, got {n_hrfs}")
    raw = raw[np.unique(np.round(np.linspace(0, len(raw) - 1, n_hrfs)).astype(int))]
    times = np.arange(0, HRF_LENGTH, FINE_DT)
    hrfs = PchipInterpolator(np.arange(raw.shape[1]) * GLMSINGLE_DT, raw, axis=1)(times)
    hrfs /= np.abs(hrfs).max(axis=1, keepdims=True)
    return HrfLibrary(hrfs=hrfs, time_to_peak=times[np.argmax(hrfs, axis=1)], name="glmsingle-nsd")


def double_gamma_library(n_hrfs: int = 20) -> HrfLibrary:
    """Double gammas with time to peak 3.5-8.0 s (the default library of earlier versions)."""
    times = np.arange(0, HRF_LENGTH, FINE_DT)
    # the double gamma with dispersion 0.9 peaks about 0.9 s before its delay parameter
    time_to_peak_target = np.linspace(3.5, 8.0, n_hrfs)
    peak_delay = time_to_peak_target + 0.9
    gap = np.linspace(6.0, 10.0, n_hrfs)
    ratio = np.linspace(0.25, 0.40, n_hrfs)
    hrfs = np.stack([double_gamma(times, p, p + g, r) for p, g, r in zip(peak_delay, gap, ratio, strict=True)])
    return HrfLibrary(hrfs=hrfs.astype(np.float64), time_to_peak=times[np.argmax(hrfs, axis=1)],
                      params=np.column_stack([peak_delay, peak_delay + gap, ratio]), name="double-gamma")


def canonical_library() -> HrfLibrary:
    """A one-member library with nilearn's Glover HRF (the LSA baseline)."""
    times = np.arange(0, HRF_LENGTH, FINE_DT)
    hrf = double_gamma(times, 6.0, 12.0, 0.35)
    return HrfLibrary(hrfs=hrf[None, :], time_to_peak=np.array([times[np.argmax(hrf)]]),
                      params=np.array([[6.0, 12.0, 0.35]]), name="glover")


def trial_regressors(library: HrfLibrary, onsets: np.ndarray, durations: np.ndarray, frame_times: np.ndarray,
                     amplitudes: np.ndarray | None = None) -> np.ndarray:
    """One regressor per trial for every HRF of the library.

    Each trial is modelled where it is: its onset in seconds (not rounded to the TR grid: the response is sampled at
    each volume's time from a grid of :data:`FINE_DT` s, interpolated linearly), its own duration (rounded to
    :data:`FINE_DT`; 0 is an impulse), however long (a stimulus longer than a TR is one boxcar, not several trials).

    Parameters
    ----------
    library : HrfLibrary
    onsets, durations : ndarray, shape (n_trials,)
        Seconds.
    frame_times : ndarray, shape (n_volumes,)
        Acquisition time of each volume (s).
    amplitudes : ndarray, shape (n_trials,), optional
        Scale of each trial's regressor (an events file's ``modulation``, see
        :mod:`bids_recon.design.modulation`): the regressor then peaks at it and the trial's beta is the peak
        response divided by it. Default 1.

    Returns
    -------
    ndarray, shape (n_hrfs, n_volumes, n_trials), float64
        Boxcar of each trial's duration convolved with each HRF, normalised so that the response to an
        event of that duration peaks at 1 (times ``amplitudes``): a beta is the peak of the trial's response, for a
        12-s block as for a 0.5-s flash, in the data's units.
    """
    onsets = np.asarray(onsets, dtype=float)
    durations = np.asarray(durations, dtype=float)
    n_hrfs, n_samples = library.hrfs.shape
    out = np.zeros((n_hrfs, len(frame_times), len(onsets)))
    lags = frame_times[:, None] - onsets[None, :]  # (n_volumes, n_trials)
    for duration in np.unique(durations):
        columns = np.flatnonzero(durations == duration)
        width = max(1, int(round(duration / FINE_DT)))
        # response to a boxcar of this duration on the fine grid: cumulative sum of the HRF over the box
        response = np.stack([np.convolve(h, np.ones(width))[: n_samples + width] for h in library.hrfs])
        response /= np.abs(response).max(axis=1, keepdims=True)
        grid = np.arange(response.shape[1]) * FINE_DT
        lag = lags[:, columns]
        inside = (lag >= 0) & (lag <= grid[-1])
        # a boxcar's running sum at sample k integrates the HRF up to (k + 1/2) FINE_DT (midpoint rule): read it half
        # a sample later, or every response leads the data by 25 ms (0.8% of the peak where it rises fastest); an
        # impulse (duration 0) is the HRF itself
        shift = 0.5 if duration > 0 else 0.0
        index = np.clip(lag / FINE_DT - shift, 0, len(grid) - 1)
        low = np.floor(index).astype(int)
        high = np.minimum(low + 1, len(grid) - 1)
        weight = index - low
        for k in range(n_hrfs):
            values = (1 - weight) * response[k, low] + weight * response[k, high]
            out[k][:, columns] = np.where(inside, values, 0.0)
    if amplitudes is not None:
        amplitudes = np.asarray(amplitudes, dtype=float)
        if amplitudes.shape != onsets.shape:
            raise ValueError(f"amplitudes must have one value per trial ({len(onsets)}), got shape {amplitudes.shape}")
        out *= amplitudes[None, None, :]
    return out


def event_regressor(onsets: np.ndarray, durations: np.ndarray, amplitudes: np.ndarray, frame_times: np.ndarray,
                    library: HrfLibrary | None = None) -> np.ndarray:
    """One regressor for a group of events that are not trials (a nuisance or parametric regressor).

    Parameters
    ----------
    onsets, durations, amplitudes : ndarray, shape (n_events,)
        Seconds, seconds, and each event's scale (its ``modulation``).
    frame_times : ndarray, shape (n_volumes,)
    library : HrfLibrary, optional
        Its first HRF is used (default: :func:`canonical_library`, nilearn's Glover HRF).

    Returns
    -------
    ndarray, shape (n_volumes,)
        Sum over the events of the response to each one's boxcar, peaking at its amplitude (the normalisation of
        :func:`trial_regressors`).
    """
    library = canonical_library() if library is None else library
    member = HrfLibrary(hrfs=library.hrfs[:1], time_to_peak=library.time_to_peak[:1], name=library.name)
    return trial_regressors(member, onsets, durations, frame_times, amplitudes)[0].sum(axis=1)
