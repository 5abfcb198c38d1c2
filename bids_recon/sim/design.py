"""Trial schedules, timing and the canonical LSA design used to calibrate the noise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special

from bids_recon.design.repeats import repeat_numbers
from bids_recon.sim.presets import SimPreset


def run_length(preset: SimPreset, n_trials: int | None = None) -> tuple[int, int]:
    """Trial slots and volumes per run.

    Parameters
    ----------
    preset : SimPreset
        Timing and counts.
    n_trials : int, optional
        Trials of this run (default: the preset's trials spread evenly over its runs).

    Returns
    -------
    n_slots : int
        Trial slots (``soa`` apart) per run, including the blank ones.
    n_vols : int
        Volumes per run.
    """
    n_runs = preset.n_sessions * preset.n_runs
    per_run = math.ceil(preset.n_trials / n_runs) if n_trials is None else int(n_trials)
    n_slots = math.ceil(per_run / (1.0 - preset.blank_fraction))
    n_slots = max(n_slots, per_run + (1 if preset.blank_fraction > 0 else 0))
    duration = preset.lead_in + (n_slots - 1) * preset.soa + preset.stim_duration + preset.lead_out
    return n_slots, math.ceil(duration / preset.tr)


def _assign_runs(
    rng: np.random.Generator, preset: SimPreset, stim_table: pd.DataFrame, test_only_runs: int = 0,
    capacity: list[int] | None = None,
) -> list[list[int]]:
    """Stimulus ids presented in each run (unordered), test repeats in different runs where possible.

    With ``test_only_runs``, the test presentations go to the last runs only (a test session, as in GOD), and
    training stimuli fill the other runs first. ``capacity`` gives the trials of each run (summing to the preset's
    trials; default: as even as possible).
    """
    n_runs = preset.n_sessions * preset.n_runs
    n_trials = preset.n_trials
    if capacity is None:
        capacity = np.full(n_runs, n_trials // n_runs)
        capacity[rng.permutation(n_runs)[: n_trials % n_runs]] += 1
    else:
        capacity = np.asarray(capacity, dtype=int)
        if len(capacity) != n_runs or int(capacity.sum()) != n_trials:
            raise ValueError(f"run capacities {list(capacity)} do not give {n_trials} trials in {n_runs} runs")
    runs: list[list[int]] = [[] for _ in range(n_runs)]
    test_ids = stim_table.loc[stim_table["split"] == "test", "stim_id"].to_numpy()
    train_ids = stim_table.loc[stim_table["split"] == "train", "stim_id"].to_numpy()
    n_test_in = np.zeros(n_runs, dtype=int)
    for sid in rng.permutation(test_ids):
        used = np.zeros(n_runs, dtype=int)
        for _ in range(preset.n_test_repeats):
            # fewest uses by this stimulus first, then fewest test trials, then random
            key = used * 10**6 + n_test_in * 10**3 + rng.permutation(n_runs)
            key[np.array([len(r) for r in runs]) >= capacity] = np.iinfo(np.int64).max
            if test_only_runs:
                key[: n_runs - test_only_runs] = np.iinfo(np.int64).max
            r = int(np.argmin(key))
            runs[r].append(int(sid))
            used[r] += 1
            n_test_in[r] += 1
    order = rng.permutation(train_ids)
    pos = 0
    for r in sorted(range(n_runs), key=lambda r: r >= n_runs - test_only_runs if test_only_runs else 0):
        take = capacity[r] - len(runs[r])
        runs[r].extend(int(s) for s in order[pos : pos + take])
        pos += take
    return runs


def _trial_slots(rng: np.random.Generator, n_slots: int, n_trials: int) -> np.ndarray:
    """Slots holding a trial; the blank slots are spread out (jittered regular grid, never first/last).

    Long unbroken trains of 4-s trials make LSA estimates very variable; spreading the blanks keeps the
    single-trial estimation noise similar across trials.
    """
    n_blank = n_slots - n_trials
    if n_blank <= 0:
        return np.arange(n_slots)
    step = n_slots / (n_blank + 1)
    centres = step * np.arange(1, n_blank + 1) + rng.uniform(-step / 4, step / 4, n_blank)
    blanks = np.clip(np.rint(centres).astype(int), 1, n_slots - 2)
    free = sorted(set(range(1, n_slots - 1)) - set(blanks.tolist()))
    blanks = np.unique(blanks)
    while len(blanks) < n_blank:  # collisions (very short runs): take the free slot nearest a gap
        blanks = np.unique(np.append(blanks, free.pop(len(free) // 2)))
    return np.setdiff1d(np.arange(n_slots), blanks)


def _order_run(
    rng: np.random.Generator, preset: SimPreset, slots: np.ndarray, n_vols: int, ids: list[int],
    splits: dict[int, str], confounds: np.ndarray | None = None,
) -> list[int]:  # fmt: skip
    """Order a run's stimuli over its trial slots.

    Test presentations are spread over positions with low, medium and high LSA estimation variance
    (one per stratum of positions sorted by variance), so that their noise is representative of the
    run (otherwise NSD's ncsnr, which compares repeat variance with all trials' variance, is biased);
    the rest is random. The same stimulus is not shown twice in a row where a swap can avoid it.
    """
    n = len(ids)
    onsets = preset.lead_in + slots * preset.soa
    x = canonical_design(onsets, preset.stim_duration, n_vols, preset.tr, confounds)
    p = np.linalg.pinv(x)[:n]
    rho = float(np.mean(preset.ar1_range))
    lags = np.abs(np.arange(n_vols)[:, None] - np.arange(n_vols)[None, :])
    var = ((p @ rho**lags) * p).sum(1)  # LSA variance of each trial under typical AR(1) noise
    test = [i for i in ids if splits[i] == "test"]
    train = [i for i in ids if splits[i] != "test"]
    order = np.argsort(var + 1e-9 * rng.uniform(size=n), kind="stable")
    # one test position per stratum, chosen (coordinate descent from random picks) so that the mean
    # variance of the test positions matches the run's mean variance
    strata = [rng.permutation(s) for s in np.array_split(order, len(test))] if test else []
    pick = [s[0] for s in strata]
    target = var.mean() * len(strata)
    for _ in range(4):
        for i, s in enumerate(strata):
            rest = sum(var[p] for p in pick) - var[pick[i]]
            pick[i] = s[np.argmin(np.abs(rest + var[s] - target))]
    test_pos = np.array(sorted(int(p) for p in pick), dtype=int)
    out = np.zeros(n, dtype=int)
    out[test_pos] = rng.permutation(test)
    rest = np.setdiff1d(np.arange(n), test_pos)
    out[rest] = rng.permutation(train)
    seq = [int(v) for v in out]
    tp = sorted(int(v) for v in test_pos)
    for i in tp:
        if i > 0 and seq[i] == seq[i - 1]:
            for j in tp:
                if seq[j] == seq[i]:
                    continue
                ok_j = all(seq[k] != seq[i] for k in (j - 1, j + 1) if 0 <= k < n and k != i)
                ok_i = all(seq[k] != seq[j] for k in (i - 1, i + 1) if 0 <= k < n and k != j)
                if ok_i and ok_j:
                    seq[i], seq[j] = seq[j], seq[i]
                    break
    return seq


def make_schedule(
    rng: np.random.Generator,
    preset: SimPreset,
    stim_table: pd.DataFrame,
    subject: str,
    confounds: dict[tuple[str, str], np.ndarray] | None = None,
    test_only_runs: int = 0,
    run_trials: list[int] | None = None,
) -> tuple[pd.DataFrame, int | dict[tuple[str, str], int]]:
    """Trial table of one subject.

    Parameters
    ----------
    rng : numpy.random.Generator
        Subject's randomness (trial orders differ by subject).
    preset : SimPreset
        Timing and counts.
    stim_table : DataFrame
        Stimulus table (stim_id, stim_file, split).
    subject : str
        Subject label.
    confounds : dict, optional
        ``(session, run) -> (n_vols, n_conf)`` confound regressors of each run; used (like the design's
        drift) to place the test presentations at positions of representative estimation noise.

    Returns
    -------
    trials : DataFrame
        One row per trial, in (session, run, trial_index) order, with columns subject, session, run,
        trial_index (0-based within the run), onset, duration (s), stim_id, stim_file, repeat (0-based
        count of earlier presentations of the stimulus to this subject), split.
    n_vols : int or dict
        Volumes per run (all runs have the same length); with ``run_trials``, ``(session, run) -> volumes``.
    test_only_runs : int
        Put the test presentations in the last runs only (see :func:`_assign_runs`).
    run_trials : list of int, optional
        Trials of each run (runs of unequal length; see :func:`run_plan_volumes`).
    """
    n_slots, n_vols = run_length(preset)
    runs = _assign_runs(rng, preset, stim_table, test_only_runs, run_trials)
    files = dict(zip(stim_table["stim_id"], stim_table["stim_file"], strict=True))
    splits = dict(zip(stim_table["stim_id"], stim_table["split"], strict=True))
    rows = []
    for r, ids in enumerate(runs):
        ses, run = divmod(r, preset.n_runs)
        slots_r, vols_r = (n_slots, n_vols) if run_trials is None else run_length(preset, run_trials[r])
        slots = _trial_slots(rng, slots_r, len(ids))
        conf = None if confounds is None else confounds.get((f"{ses + 1:02d}", f"{run + 1:02d}"))
        ids = _order_run(rng, preset, slots, vols_r, ids, splits, conf)
        for k, (slot, sid) in enumerate(zip(slots, ids, strict=True)):
            rows.append(
                {
                    "subject": subject,
                    "session": f"{ses + 1:02d}",
                    "run": f"{run + 1:02d}",
                    "trial_index": k,
                    "onset": float(preset.lead_in + slot * preset.soa),
                    "duration": float(preset.stim_duration),
                    "stim_id": int(sid),
                    "stim_file": files[sid],
                    "split": splits[sid],
                }
            )
    trials = pd.DataFrame(rows)
    trials.insert(8, "repeat", repeat_numbers(trials["stim_id"]))
    if run_trials is not None:
        return trials, run_plan_volumes(preset, run_trials)
    return trials, n_vols


def run_plan_volumes(preset: SimPreset, run_trials: list[int]) -> dict[tuple[str, str], int]:
    """Volumes of each run when run ``r`` (0-based, sessions first) has ``run_trials[r]`` trials.

    Returns
    -------
    dict
        ``(session, run) -> n_vols`` with the schedule's zero-padded labels.
    """
    out = {}
    for r, n in enumerate(run_trials):
        ses, run = divmod(r, preset.n_runs)
        out[(f"{ses + 1:02d}", f"{run + 1:02d}")] = run_length(preset, n)[1]
    return out


# --------------------------------------------------------------------------------------------------
# HRFs


def gamma_difference(
    t: np.ndarray, peak: np.ndarray, under: np.ndarray, ratio: np.ndarray, disp: float = 0.9
) -> np.ndarray:
    """Double-gamma impulse response (nilearn/SPM parametrisation), unnormalised.

    ``h(t) = g(t; peak/disp, disp) - ratio * g(t; under/disp, disp)`` with ``g`` the gamma pdf of shape
    and scale given; the first lobe peaks at ``peak - disp`` s.

    Parameters
    ----------
    t : ndarray, shape (n_t,)
        Times in seconds.
    peak, under, ratio : ndarray, shape (n,)
        Delay of the response and of the undershoot (s), undershoot ratio.
    disp : float
        Dispersion (gamma scale) in seconds.

    Returns
    -------
    ndarray, shape (n, n_t)
    """
    tt = np.asarray(t, dtype=float)[None, :]
    pos = tt > 0
    logt = np.log(np.where(pos, tt, 1.0))

    def pdf(shape: np.ndarray) -> np.ndarray:
        a = (np.asarray(shape, float) / disp)[:, None]
        logp = (a - 1) * logt - tt / disp - special.gammaln(a) - a * np.log(disp)
        return np.where(pos, np.exp(logp), 0.0)

    return pdf(peak) - np.asarray(ratio, float)[:, None] * pdf(under)


def gamma_difference_integral(
    t: np.ndarray, peak: np.ndarray, under: np.ndarray, ratio: np.ndarray, disp: float = 0.9
) -> np.ndarray:
    """Running integral ``int_0^t h(s) ds`` of :func:`gamma_difference`, shape (n, n_t)."""
    tt = np.clip(np.asarray(t, dtype=float)[None, :], 0, None) / disp
    c1 = special.gammainc((np.asarray(peak, float) / disp)[:, None], tt)
    c2 = special.gammainc((np.asarray(under, float) / disp)[:, None], tt)
    return c1 - np.asarray(ratio, float)[:, None] * c2


def boxcar_response(
    tau: np.ndarray, duration: float, peak: np.ndarray, under: np.ndarray, ratio: np.ndarray
) -> np.ndarray:
    """Response to a stimulus of ``duration`` s at lags ``tau``: ``int_0^d h(tau - s) ds``, shape (n, n_t)."""
    return gamma_difference_integral(tau, peak, under, ratio) - gamma_difference_integral(
        np.asarray(tau) - duration, peak, under, ratio
    )


def cosine_drift(n_vols: int, tr: float, high_pass: float = 0.01) -> np.ndarray:
    """nilearn's cosine drift basis without the constant, shape (n_vols, order)."""
    order = min(n_vols - 1, int(np.floor(2 * n_vols * high_pass * tr)))
    n = np.arange(n_vols)
    k = np.arange(1, order + 1)
    return np.sqrt(2.0 / n_vols) * np.cos(np.pi / n_vols * (n[:, None] + 0.5) * k[None, :])


def fmriprep_cosines(n_vols: int, tr: float, period_cut: float = 128.0) -> np.ndarray:
    """fMRIPrep's ``cosineXX`` confound columns (DCT basis, 128 s cutoff), shape (n_vols, n_cos)."""
    order = int(np.floor(2 * n_vols * tr / period_cut))
    n = np.arange(n_vols)
    k = np.arange(1, max(order, 1))
    return np.sqrt(2.0 / n_vols) * np.cos(np.pi / n_vols * (n[:, None] + 0.5) * k[None, :])


def canonical_design(
    onsets: np.ndarray, duration: float | np.ndarray, n_vols: int, tr: float, confounds: np.ndarray | None
) -> np.ndarray:
    """LSA design as a standard analysis builds it (Glover HRF, cosine drift, confounds, constant).

    Parameters
    ----------
    onsets : ndarray, shape (n_trials,)
        Trial onsets (s).
    duration : float or ndarray, shape (n_trials,)
        Trial duration (s), one for all trials or one per trial.
    n_vols : int
        Volumes.
    tr : float
        Repetition time.
    confounds : ndarray, shape (n_vols, n_conf) or None
        Confound regressors.

    Returns
    -------
    ndarray, shape (n_vols, n_trials + n_other)
        Trial columns first.
    """
    ft = np.arange(n_vols) * tr
    tau = ft[None, :] - np.asarray(onsets, float)[:, None]
    if np.ndim(duration):  # one duration per trial, repeated along its row of lags
        duration = np.broadcast_to(np.asarray(duration, float)[:, None], tau.shape).ravel()
    # nilearn's Glover HRF: delay 6, undershoot 12, dispersions 0.9, ratio 0.35; a long block reaches 1
    resp = boxcar_response(tau.ravel(), duration, np.array([6.0]), np.array([12.0]), np.array([0.35]))
    trial_cols = resp.reshape(tau.shape).T / (1 - 0.35)
    parts = [trial_cols, cosine_drift(n_vols, tr)]
    if confounds is not None and confounds.size:
        c = confounds - confounds.mean(0)
        parts.append(c / (c.std(0) + 1e-12))
    parts.append(np.ones((n_vols, 1)))
    return np.concatenate(parts, axis=1)
