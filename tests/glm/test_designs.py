"""Designs GLMsingle makes users fight, modelled directly and checked against ground truth.

Variable durations, onsets off the TR grid, stimuli longer than a TR (GLMsingle issues #193, #50, #179, #96) and the
events' ``modulation`` column (docs/betas.md, "Designs"). The true responses come from an independent model: a
0.01-s grid, each trial's boxcar convolved with a Glover double gamma written here from scipy's gamma density (not
bids_recon's HRFs or :func:`~bids_recon.glm.hrf.trial_regressors`), scaled so that its peak is the trial's amplitude,
and read at each volume's time exactly.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bids_recon.design.events import load_events
from bids_recon.design.modulation import run_modulations
from bids_recon.design.trials import run_trials
from bids_recon.errors import BadDataError, ExitCode
from bids_recon.features.params import stimulus_params
from bids_recon.glm.estimators import SessionRun, fit_session
from bids_recon.glm.params import GlmParams
from bids_recon.glm.runs import RunFiles, estimate_session_betas

TR = 2.0
N_VOLUMES = 200
N_VOXELS = 100
FINE = 0.01
LSA = GlmParams(estimator="lsa")


def glover(t: np.ndarray) -> np.ndarray:
    """SPM/Glover double gamma (peak 6 s / 0.9 dispersion, undershoot 12 s, ratio 0.35), from scipy."""
    return stats.gamma.pdf(t, 6.0 / 0.9, scale=0.9) - 0.35 * stats.gamma.pdf(t, 12.0 / 0.9, scale=0.9)


HRF = glover(np.arange(0.0, 32.0, FINE))


def responses(onsets: np.ndarray, durations: np.ndarray, frame_times: np.ndarray) -> np.ndarray:
    """``(n_volumes, n_events)``: each event's response, peak 1, read at the volumes' times (no TR grid)."""
    out = np.zeros((len(frame_times), len(onsets)))
    for i, (onset, duration) in enumerate(zip(onsets, durations, strict=True)):
        response = np.convolve(np.ones(max(1, int(round(duration / FINE)))), HRF)
        response /= response.max()
        out[:, i] = np.interp(frame_times - onset, np.arange(len(response)) * FINE, response, left=0.0, right=0.0)
    return out


def design(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Onsets and durations of one run (400 s) of a design kind."""
    if kind == "durations":  # on the grid, 0.5-6 s
        return 10.0 + 8.0 * np.arange(48), rng.uniform(0.5, 6.0, 48)
    if kind == "off-grid":  # 2-s stimuli, onsets jittered uniformly by up to half a TR either way
        return 10.0 + 6.0 * np.arange(60) + rng.uniform(-1.0, 1.0, 60), np.full(60, 2.0)
    if kind == "long":  # 4-12 s, two to six TRs
        return 10.0 + 16.0 * np.arange(24), rng.uniform(4.0, 12.0, 24)
    raise ValueError(kind)


def simulate(designs, amplitudes, noise: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frame_times = np.arange(N_VOLUMES) * TR
    return [responses(onsets, durations, frame_times) @ a + noise * rng.standard_normal((N_VOLUMES, a.shape[1]))
            for (onsets, durations), a in zip(designs, amplitudes, strict=True)]


def lsa_betas(data: list[np.ndarray], designs, modulations=None) -> np.ndarray:
    runs = [SessionRun(data=y.astype(np.float32), onsets=onsets, durations=durations,
                       stim_ids=np.array([f"s{i}" for i in range(len(onsets))]), repetition_time=TR,
                       modulations=None if modulations is None else modulations[r])
            for r, (y, (onsets, durations)) in enumerate(zip(data, designs, strict=True))]
    return np.concatenate(fit_session(runs, LSA).betas).astype(np.float64)


def gridded(designs) -> list[tuple[np.ndarray, np.ndarray]]:
    """What GLMsingle takes: onsets rounded to the nearest volume, one duration (the mean) for every trial."""
    duration = float(np.mean(np.concatenate([d for _, d in designs])))
    return [(np.round(onsets / TR) * TR, np.full(len(onsets), duration)) for onsets, _ in designs]


def median_r(betas: np.ndarray, truth: np.ndarray) -> float:
    """Median over voxels of the correlation across trials."""
    b, t = betas - betas.mean(axis=0), truth - truth.mean(axis=0)
    return float(np.median((b * t).sum(axis=0) / np.sqrt((b * b).sum(axis=0) * (t * t).sum(axis=0))))


def session(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    designs = [design(kind, rng) for _ in range(2)]
    amplitudes = [1.0 + 0.8 * rng.standard_normal((len(d[0]), N_VOXELS)) for d in designs]
    return designs, amplitudes


@pytest.mark.parametrize("kind", ["durations", "off-grid", "long"])
def test_trials_are_modelled_where_and_as_long_as_they_are(kind):
    """Noise-free: the betas are the true amplitudes (the peak of each trial's response, whatever its duration or
    onset) to within 1%; the TR-grid, one-duration model GLMsingle takes is off by 10% or more; with noise the
    betas correlate with the truth as well as an on-grid, fixed-duration design of the same size does, and better than
    the TR-grid model on the same data."""
    designs, amplitudes = session(kind)
    truth = np.concatenate(amplitudes)
    clean = simulate(designs, amplitudes, 0.0, seed=1)
    if kind == "long":  # a beta is the peak of the response to the whole block: the data's peak, in its units
        first = responses(*(x[:1] for x in designs[0]), np.arange(N_VOLUMES) * TR)[:, 0]
        assert first.max() == pytest.approx(1.0, abs=0.01)
    assert np.abs(lsa_betas(clean, designs) - truth).max() < 0.02
    assert np.abs(lsa_betas(clean, gridded(designs)) - truth).max() > 0.1

    noisy = simulate(designs, amplitudes, 0.3, seed=2)
    ours, on_grid = median_r(lsa_betas(noisy, designs), truth), median_r(lsa_betas(noisy, gridded(designs)), truth)
    baseline = gridded(designs)  # the same trials on the grid with one duration: GLMsingle's own kind of design
    fixed = median_r(lsa_betas(simulate(baseline, amplitudes, 0.3, seed=2), baseline), truth)
    assert ours >= fixed - 0.01, (ours, fixed)
    assert ours >= on_grid + 0.01, (ours, on_grid)


def test_trial_modulation_divides_the_beta():
    """A trial's modulation scales its regressor: its beta is the peak response per unit of modulation."""
    designs, amplitudes = session("durations")
    modulations = [np.random.default_rng(3).uniform(0.5, 2.0, len(d[0])) for d in designs]
    clean = simulate(designs, amplitudes, 0.0, seed=1)
    betas = lsa_betas(clean, designs, modulations)
    assert np.abs(betas * np.concatenate(modulations)[:, None] - np.concatenate(amplitudes)).max() < 0.02


def write_run(directory: Path, events: pd.DataFrame, data: np.ndarray) -> RunFiles:
    """A run's BOLD (4 x 5 x 5 voxels, mean 100: ``data`` is its percent signal change up to a constant), events
    and confounds in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    bold = 100.0 + (data - data.mean(axis=0)).T.reshape(4, 5, 5, -1)
    nib.save(nib.Nifti1Image(bold.astype(np.float32), np.eye(4)), directory / "bold.nii.gz")
    events.to_csv(directory / "events.tsv", sep="\t", index=False, na_rep="n/a")
    pd.DataFrame({"trans_x": np.random.default_rng(0).normal(0, 0.01, len(data))}).to_csv(
        directory / "confounds.tsv", sep="\t", index=False)
    return RunFiles(bold=directory / "bold.nii.gz", events=directory / "events.tsv",
                    confounds=directory / "confounds.tsv", repetition_time=TR, subject="01", session=None, run="1")


def test_modulated_events_that_are_not_trials_are_regressed_out(tmp_path):
    """Button presses with a response-time modulation, not trials, in the data: with their ``modulation`` they are
    a nuisance regressor and the trials' betas come out right; the same file without the column leaves them in the
    trials' betas."""
    rng = np.random.default_rng(4)
    onsets, durations = design("off-grid", rng)
    presses = onsets + rng.uniform(1.0, 3.0, len(onsets))
    rts = rng.uniform(0.4, 1.6, len(onsets))
    amplitudes = 1.0 + 0.8 * rng.standard_normal((len(onsets), N_VOXELS))
    frame_times = np.arange(N_VOLUMES) * TR
    press_response = responses(presses, np.zeros(len(presses)), frame_times) @ (rts - rts.mean())
    data = responses(onsets, durations, frame_times) @ amplitudes + np.outer(press_response, np.full(N_VOXELS, 1.5))
    events = pd.concat([
        pd.DataFrame({"onset": onsets, "duration": durations, "trial_type": "image",
                      "stim_file": [f"img{i:03d}.png" for i in range(len(onsets))], "modulation": 1.0}),
        pd.DataFrame({"onset": presses, "duration": 0.0, "trial_type": "press_rt", "stim_file": None,
                      "modulation": rts - rts.mean()}),
    ]).sort_values("onset")
    mask = nib.Nifti1Image(np.ones((4, 5, 5), np.uint8), np.eye(4))
    params = GlmParams(estimator="lsa", confounds=["trans_x"])
    modelled = estimate_session_betas([write_run(tmp_path / "with", events, data)], mask, params, "stim_file")
    assert "events_press_rt" in modelled.design.columns
    assert np.abs(modelled.betas[0] - amplitudes).max() < 0.02
    ignored = estimate_session_betas([write_run(tmp_path / "without", events.drop(columns="modulation"), data)],
                                     mask, params, "stim_file")
    assert np.abs(ignored.betas[0] - amplitudes).max() > 0.2


AMBIGUOUS = {
    "not a number": (["1", "high", "1"], ["a.png", "b.png", "c.png"], ["2"] * 3, "line 3: 'high'"),
    "zero on a trial": (["1", "0", "1"], ["a.png", "b.png", "c.png"], ["2"] * 3, "must be positive"),
    "mean-centred trials": (["0.5", "-0.5", "0"], ["a.png", "b.png", "c.png"], ["2"] * 3, "line 3"),
    "some trials n/a": (["1", "n/a", "2"], ["a.png", "b.png", "c.png"], ["2"] * 3, "line 3: a trial without"),
    "nuisance half n/a": (["n/a", "0.3", "n/a", "n/a"], ["a.png", "n/a", "n/a", "b.png"], ["2"] * 4,
                          "'press' has a modulation on some rows"),
    "nuisance duration n/a": (["n/a", "0.3", "0.1", "n/a"], ["a.png", "n/a", "n/a", "b.png"],
                              ["2", "n/a", "0", "2"], "column 'duration', line 3"),
}


@pytest.mark.parametrize("case", list(AMBIGUOUS))
def test_ambiguous_modulations_are_refused_naming_the_file_and_column(tmp_path, case):
    modulation, stim_file, duration, expected = AMBIGUOUS[case]
    n = len(modulation)
    table = pd.DataFrame({"onset": [str(10 * i) for i in range(n)], "duration": duration, "stim_file": stim_file,
                          "trial_type": ["press" if s == "n/a" else "image" for s in stim_file],
                          "modulation": modulation})
    path = tmp_path / "sub-01_task-x_events.tsv"
    table.to_csv(path, sep="\t", index=False)
    with pytest.raises(BadDataError) as caught:  # the input checks and the GLM read events through run_trials
        run_trials(load_events(path), "01", None, "1", stimulus_params("stim_file"), path)
    assert caught.value.exit_code == ExitCode.BAD_DATA == 65
    message = str(caught.value)
    assert path.name in message and expected in message, message
    assert "'modulation'" in message or "'duration'" in message


def test_modulation_rules_that_change_nothing():
    """No column, ``n/a`` everywhere, or 1 on every trial: the model is the one without modulations."""
    events = pd.DataFrame({"onset": [0.0, 5.0, 9.0], "duration": [1.0, 0.0, 1.0]})
    assert run_modulations(events, np.array([0, 2])).trials is None
    assert run_modulations(events.assign(modulation=np.nan), np.array([0, 2])) == run_modulations(events, [0, 2])
    ones = run_modulations(events.assign(modulation=[1.0, np.nan, 1.0]), np.array([0, 2]))
    assert ones.trials is None and not ones.nuisance


def test_slice_timing_corrected_volumes_are_modelled_at_their_reference_time():
    """fMRIPrep's slice-timing correction makes volume k sample the signal at k TR + StartTime (TR / 2 here): modelled
    at k TR, every regressor leads the data by a second and the betas lose accuracy; with ``start_time`` they don't."""
    rng = np.random.default_rng(3)
    start = TR / 2
    designs = [(10.0 + 4.0 * np.arange(90) + rng.uniform(-1.0, 1.0, 90), np.full(90, 1.0)) for _ in range(2)]
    amplitudes = [1.0 + 0.8 * rng.standard_normal((90, N_VOXELS)) for _ in designs]
    frame_times = np.arange(N_VOLUMES) * TR + start
    data = [responses(onsets, durations, frame_times) @ a + 0.3 * rng.standard_normal((N_VOLUMES, N_VOXELS))
            for (onsets, durations), a in zip(designs, amplitudes, strict=True)]
    truth = np.concatenate(amplitudes)

    def betas(start_time: float) -> np.ndarray:
        runs = [SessionRun(data=y.astype(np.float32), onsets=onsets, durations=durations,
                           stim_ids=np.array([f"s{i}" for i in range(len(onsets))]), repetition_time=TR,
                           start_time=start_time)
                for y, (onsets, durations) in zip(data, designs, strict=True)]
        return np.concatenate(fit_session(runs, LSA).betas).astype(np.float64)

    shifted, ignored = median_r(betas(start), truth), median_r(betas(0.0), truth)
    assert shifted > 0.9, shifted
    assert shifted > ignored + 0.05, (shifted, ignored)
