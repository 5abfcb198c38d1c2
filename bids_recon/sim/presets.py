"""Simulation presets: the sizes, timings and signal/noise settings of a synthetic dataset."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from bids_recon.errors import UsageError

TASK = "images"
"""BIDS task label of the simulated runs."""


@dataclass(frozen=True)
class SimPreset:
    """Settings of one simulated dataset.

    Times are in seconds, sizes in voxels or pixels, responses in percent signal change.

    Attributes
    ----------
    name : str
        Preset name (written to the README and dataset_description.json).
    n_subjects, n_sessions, n_runs : int
        Subjects; sessions per subject; runs per session.
    n_train : int
        Training stimuli, each shown once to every subject.
    n_test : int
        Test stimuli, each shown ``n_test_repeats`` times to every subject.
    n_test_repeats : int
        Presentations of each test stimulus (in different runs where possible).
    image_size : int
        Width and height of the square RGB stimulus images.
    grid : tuple of int
        Volume shape ``(nx, ny, nz)`` of the 2 mm MNI-like grid.
    voxel_size : float
        Isotropic voxel size in mm.
    tr : float
        Repetition time.
    stim_duration, soa : float
        Image on-time and stimulus onset asynchrony of the trial slots.
    blank_fraction : float
        Fraction of trial slots left blank (no event) to jitter the design.
    lead_in, lead_out : float
        Blank time before the first slot and after the last image.
    early_fraction, higher_fraction : float
        Fractions of brain voxels labelled early visual / higher visual in the atlas.
    signal_fraction : float
        Fraction of the visual-label voxels that carry stimulus-specific signal.
    ncsnr_median, ncsnr_log_sd : float
        Per-voxel target single-trial noise-ceiling SNR of signal voxels: lognormal with this median and
        log-sd, clipped to ``ncsnr_range``.
    ncsnr_range : tuple of float
        Clip range of the target ncsnr.
    signal_sd_range : tuple of float
        Uniform range of the across-stimulus sd of a signal voxel's response (% signal change).
    evoked_mean, evoked_sd : float
        Mean evoked response of visual-label voxels (% signal change) and its spread across voxels.
    trial_jitter : float
        Trial-to-trial (neural) variability of single-trial amplitudes, as a fraction of the voxel's
        response sd.
    ar1_range : tuple of float
        Uniform range of the AR(1) coefficient of the voxel noise.
    shared_noise : float
        Sd of the shared (confound-explained) noise relative to the voxel's AR(1) noise sd.
    confound_noise : float
        Measurement noise of the written confound series, relative to each series' sd.
    drift_sd : float
        Sd (% signal change) of the slow cosine drift amplitudes per voxel and basis function.
    prf_sigma_range : tuple of float
        Receptive-field sd as a fraction of the image width, from fovea to periphery.
    """

    name: str
    n_subjects: int
    n_sessions: int
    n_runs: int
    n_train: int
    n_test: int
    n_test_repeats: int
    image_size: int
    grid: tuple[int, int, int]
    voxel_size: float = 2.0
    tr: float = 1.5
    stim_duration: float = 3.0
    soa: float = 4.0
    blank_fraction: float = 0.1
    lead_in: float = 6.0
    lead_out: float = 12.0
    early_fraction: float = 0.10
    higher_fraction: float = 0.10
    signal_fraction: float = 0.60
    ncsnr_median: float = 0.40
    ncsnr_log_sd: float = 0.30
    ncsnr_range: tuple[float, float] = (0.15, 1.0)
    signal_sd_range: tuple[float, float] = (0.5, 1.5)
    evoked_mean: float = 1.0
    evoked_sd: float = 0.3
    trial_jitter: float = 0.25
    ar1_range: tuple[float, float] = (0.2, 0.5)
    shared_noise: float = 0.5
    confound_noise: float = 0.05
    drift_sd: float = 1.0
    prf_sigma_range: tuple[float, float] = (0.05, 0.20)

    @property
    def n_trials(self) -> int:
        """Trials per subject."""
        return self.n_train + self.n_test * self.n_test_repeats

    @property
    def n_stimuli(self) -> int:
        """Distinct stimuli (shared by all subjects)."""
        return self.n_train + self.n_test

    def with_overrides(self, **overrides: object) -> SimPreset:
        """Return a copy with some fields replaced.

        Raises
        ------
        UsageError
            If a name is not a field of :class:`SimPreset`.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(f"unknown simulation setting(s) {unknown}; known: {sorted(known)}")
        if "grid" in overrides:
            overrides["grid"] = tuple(int(v) for v in overrides["grid"])  # type: ignore[union-attr]
        return replace(self, **overrides)  # type: ignore[arg-type]


PRESETS: dict[str, SimPreset] = {
    "tiny": SimPreset(
        name="tiny",
        n_subjects=2,
        n_sessions=1,
        n_runs=2,
        n_train=48,
        n_test=8,
        n_test_repeats=3,
        image_size=32,
        grid=(20, 24, 20),
    ),
    "small": SimPreset(
        name="small",
        n_subjects=2,
        n_sessions=2,
        n_runs=4,
        n_train=400,
        n_test=30,
        n_test_repeats=3,
        image_size=64,
        grid=(28, 34, 28),
    ),
}
