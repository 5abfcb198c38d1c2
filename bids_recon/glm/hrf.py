"""A library of haemodynamic response functions and single-trial regressors built from them.

The library is a family of double-gamma functions (the SPM/Glover form
``h(t) = g(t; a1, b) - c * g(t; a2, b)`` with ``g`` a gamma density of shape ``a`` and scale ``b``):

- time to peak spans 3.5 to 8.0 s (NSD's library, from the data of Prince et al. 2022, spans about 4-7 s;
  we extend both ends for other populations and fast sequences);
- the undershoot follows the peak by 6 to 10 s (longer for later peaks, as in measured HRFs) and its
  depth ratio goes from 0.25 to 0.4;
- 20 members, ordered by time to peak, so that the chosen index is interpretable as "latency".

Every member is normalised so that its response to an event of the design's duration peaks at 1: a beta
is then the peak response in the data's units (percent signal change).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

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
    params : ndarray, shape (n_hrfs, 3)
        Peak delay, undershoot delay and undershoot ratio of each double gamma.
    """

    hrfs: np.ndarray
    time_to_peak: np.ndarray
    params: np.ndarray

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


def default_library(n_hrfs: int = 20) -> HrfLibrary:
    """The default library (see the module docstring for how it is built)."""
    times = np.arange(0, HRF_LENGTH, FINE_DT)
    # the double gamma with dispersion 0.9 peaks about 0.9 s before its delay parameter
    time_to_peak_target = np.linspace(3.5, 8.0, n_hrfs)
    peak_delay = time_to_peak_target + 0.9
    gap = np.linspace(6.0, 10.0, n_hrfs)
    ratio = np.linspace(0.25, 0.40, n_hrfs)
    hrfs = np.stack([double_gamma(times, p, p + g, r) for p, g, r in zip(peak_delay, gap, ratio, strict=True)])
    return HrfLibrary(hrfs=hrfs.astype(np.float64), time_to_peak=times[np.argmax(hrfs, axis=1)],
                      params=np.column_stack([peak_delay, peak_delay + gap, ratio]))


def canonical_library() -> HrfLibrary:
    """A one-member library with nilearn's Glover HRF (the LSA baseline)."""
    times = np.arange(0, HRF_LENGTH, FINE_DT)
    hrf = double_gamma(times, 6.0, 12.0, 0.35)
    return HrfLibrary(hrfs=hrf[None, :], time_to_peak=np.array([times[np.argmax(hrf)]]),
                      params=np.array([[6.0, 12.0, 0.35]]))


def trial_regressors(library: HrfLibrary, onsets: np.ndarray, durations: np.ndarray, frame_times: np.ndarray
                     ) -> np.ndarray:
    """One regressor per trial for every HRF of the library.

    Parameters
    ----------
    library : HrfLibrary
    onsets, durations : ndarray, shape (n_trials,)
        Seconds.
    frame_times : ndarray, shape (n_volumes,)
        Acquisition time of each volume (s).

    Returns
    -------
    ndarray, shape (n_hrfs, n_volumes, n_trials), float64
        Boxcar of each trial's duration convolved with each HRF, normalised so that the response to an
        event of that duration peaks at 1.
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
        index = np.clip(lag / FINE_DT, 0, len(grid) - 1)
        low = np.floor(index).astype(int)
        high = np.minimum(low + 1, len(grid) - 1)
        weight = index - low
        for k in range(n_hrfs):
            values = (1 - weight) * response[k, low] + weight * response[k, high]
            out[k][:, columns] = np.where(inside, values, 0.0)
    return out
