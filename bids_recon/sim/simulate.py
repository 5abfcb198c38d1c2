"""Write a whole simulated dataset; read its ground truth back."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import MissingInputError, UsageError
from bids_recon.sim.anatomy import make_affine, make_anatomy
from bids_recon.sim.design import make_schedule, run_length
from bids_recon.sim.model import CONFOUND_BASE, SubjectModel, bold_run, make_confounds, simulate_subject
from bids_recon.sim.presets import PRESETS, TASK, SimPreset
from bids_recon.sim.stimuli import make_stimuli
from bids_recon.sim.writers import (
    block_mean,
    to_volume,
    write_fmriprep_run,
    write_fmriprep_toplevel,
    write_raw_run,
    write_raw_toplevel,
    write_templateflow,
    write_truth,
)

# stream ids of the random generators (np.random.default_rng([seed, STREAM, ...]))
_STIMULI, _SUBJECT, _RUN, _DATASET = 0, 1, 2, 3


@dataclass
class SimulatedDataset:
    """Where a simulated dataset was written.

    Attributes
    ----------
    bids_dir : Path
        Raw BIDS dataset.
    fmriprep_dir : Path
        fMRIPrep-like derivatives (``bids_dir/derivatives/fmriprep``).
    truth_dir : Path
        Ground truth (``<bids_dir>_groundtruth``).
    templateflow_dir : Path
        TemplateFlow home with the matching atlas (``<bids_dir>_templateflow``).
    subjects : list of str
        Subject labels ("01", ...).
    task : str
        Task label.
    preset : SimPreset
        The settings used (with overrides applied).
    seed : int
        The seed used.
    """

    bids_dir: Path
    fmriprep_dir: Path
    truth_dir: Path
    templateflow_dir: Path
    subjects: list[str]
    task: str
    preset: SimPreset
    seed: int
    layout: str = "bids"
    run_args: list[str] | None = None


def output_paths(out_dir: str | Path) -> tuple[Path, Path, Path]:
    """The three folders a simulation writes: ``(bids_dir, truth_dir, templateflow_dir)`` (absolute)."""
    bids_dir = Path(out_dir).expanduser().absolute()
    return bids_dir, Path(f"{bids_dir}_groundtruth"), Path(f"{bids_dir}_templateflow")


def _is_nonempty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _resolve_preset(preset: str | SimPreset, overrides: dict[str, object]) -> SimPreset:
    if isinstance(preset, SimPreset):
        base = preset
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise UsageError(f"unknown simulation preset {preset!r}; choose one of {sorted(PRESETS)}")
    p = base.with_overrides(**overrides) if overrides else base
    if p.n_subjects < 1 or p.n_sessions < 1 or p.n_runs < 1 or p.n_train < 1 or p.n_test < 1:
        raise UsageError("a simulation needs at least 1 subject, session, run, training and test stimulus")
    if p.n_test_repeats < 1 or p.image_size < 8 or min(p.grid) < 12:
        raise UsageError("n_test_repeats must be >= 1, image_size >= 8 and every grid dimension >= 12")
    return p


def simulate_dataset(
    out_dir: str | Path, preset: str | SimPreset = "tiny", seed: int = 0, layout: str = "bids", **overrides: object
) -> SimulatedDataset:
    """Write a synthetic NSD-like dataset with known ground truth.

    Writes ``out_dir`` (raw BIDS, with fMRIPrep-like derivatives in ``out_dir/derivatives/fmriprep``),
    ``<out_dir>_groundtruth`` and ``<out_dir>_templateflow``. The folders are built under temporary names
    and renamed at the end, so an interrupted run leaves no complete-looking dataset.

    Parameters
    ----------
    out_dir : str or Path
        Raw dataset folder; must not exist or be empty (likewise its two siblings).
    preset : str or SimPreset
        A name in :data:`PRESETS` ("tiny", "small") or a preset object.
    seed : int
        Seed; the same seed gives identical arrays.
    layout : str
        ``bids`` (objects, the simulator's own layout) or ``faces`` (faces generated from known latents, with the
        generator and the latents table in ``stimuli/``: :mod:`bids_recon.sim.faces`).
    **overrides
        Preset fields to change, e.g. ``n_subjects=1``.

    Returns
    -------
    SimulatedDataset

    Raises
    ------
    UsageError
        Unknown preset or setting, bad seed, or an output folder that is not empty.
    """
    lay = _layout(layout)
    p = _resolve_preset(preset, {**(lay.overrides if lay else {}), **overrides})
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    bids_dir, truth_dir, tf_dir = output_paths(out_dir)
    for d in (bids_dir, truth_dir, tf_dir):
        if _is_nonempty(d):
            raise UsageError("output folder exists and is not empty (use a new folder or --overwrite)", d)
    tmp = {d: d.with_name(d.name + ".partial") for d in (bids_dir, truth_dir, tf_dir)}
    for t in tmp.values():
        if t.exists():
            shutil.rmtree(t)
        t.mkdir(parents=True)
    tb, tt, ttf = tmp[bids_dir], tmp[truth_dir], tmp[tf_dir]
    fmriprep_tmp = tb / "derivatives" / "fmriprep"

    subjects = [f"{i + 1:02d}" for i in range(p.n_subjects)]
    anat = make_anatomy(p.grid, p.voxel_size, p.early_fraction, p.higher_fraction)
    stim_rng = np.random.default_rng([seed, _STIMULI])
    stim = lay.make_stimuli(stim_rng, p) if lay else make_stimuli(stim_rng, p.n_train, p.n_test, p.n_test_repeats,
                                                                   p.image_size)
    write_raw_toplevel(tb, p, seed, stim, subjects, np.random.default_rng([seed, _DATASET]))
    write_fmriprep_toplevel(fmriprep_tmp, tb)
    write_templateflow(ttf, anat, p)
    native_affine = make_affine(tuple(s // 2 for s in p.grid), 2 * p.voxel_size)

    models: list[SubjectModel] = []
    for i, sub in enumerate(subjects):
        n_vols = run_length(p)[1]
        shared, confounds = make_confounds(np.random.default_rng([seed, _SUBJECT, i, 0]), p, n_vols)
        base = {k: v[list(CONFOUND_BASE)].to_numpy() for k, v in confounds.items()}
        trials, _ = make_schedule(np.random.default_rng([seed, _SUBJECT, i, 1]), p, stim.table, sub, base)
        model = simulate_subject(
            p, anat, stim.images, stim.table, trials, n_vols, sub, shared, confounds,
            np.random.default_rng([seed, _SUBJECT, i, 2]), lay.stimulus_features(stim) if lay else None,
        )  # fmt: skip
        runs = trials[["session", "run"]].drop_duplicates().itertuples(index=False)
        for r, (ses, run) in enumerate(runs):
            data = bold_run(model, p, ses, run, np.random.default_rng([seed, _RUN, i, r]))
            vol = to_volume(data, model.mask, np.int16)
            events = trials[(trials["session"] == ses) & (trials["run"] == run)]
            write_raw_run(tb, p, sub, ses, run, np.rint(block_mean(vol)).astype(np.int16), native_affine, events)
            write_fmriprep_run(fmriprep_tmp, p, model, ses, run, vol, anat.affine)
        models.append(model)
    write_truth(tt, p, seed, stim, models)
    if lay:
        lay.finish(tb, tt, stim)

    for final, t in tmp.items():
        if final.exists():
            final.rmdir()  # empty (checked above)
        t.rename(final)
    return SimulatedDataset(
        bids_dir=bids_dir,
        fmriprep_dir=bids_dir / "derivatives" / "fmriprep",
        truth_dir=truth_dir,
        templateflow_dir=tf_dir,
        subjects=subjects,
        task=TASK,
        preset=p,
        seed=seed,
        layout=layout,
        run_args=lay.run_args(bids_dir) if lay else [],
    )


def _layout(name: str):
    """``None`` for the simulator's own layout, the faces layout for ``faces`` (the layouts' registry replaces this)."""
    if name == "bids":
        return None
    if name == "faces":
        from bids_recon.sim.faces import FACES

        return FACES
    raise UsageError(f"unknown simulation layout {name!r}; choose one of ['bids', 'faces']")


def load_truth(truth_dir: str | Path, subject: str) -> dict[str, object]:
    """Read one subject's ground truth.

    Parameters
    ----------
    truth_dir : str or Path
        The ``<dataset>_groundtruth`` folder.
    subject : str
        Label, with or without ``sub-``.

    Returns
    -------
    dict
        Every array of ``sub-XX_truth.npz`` (see the folder's README.md), plus ``trials`` (DataFrame, one
        row per trial, rows aligned with ``amplitudes``) and ``stimuli`` (DataFrame, rows aligned with
        ``response``). Labels (subject, session, run) are zero-padded strings.

    Raises
    ------
    MissingInputError
        If the files do not exist.
    """
    label = subject.removeprefix("sub-")
    root = Path(truth_dir)
    npz = root / f"sub-{label}" / f"sub-{label}_truth.npz"
    if not npz.is_file():
        raise MissingInputError("no ground truth for this subject (expected sub-XX/sub-XX_truth.npz)", npz)
    with np.load(npz) as f:
        out: dict[str, object] = {k: f[k] for k in f.files}
    str_cols = {"subject": str, "session": str, "run": str, "stim_file": str, "split": str}
    out["trials"] = pd.read_csv(root / f"sub-{label}" / f"sub-{label}_trials.tsv", sep="\t", dtype=str_cols)
    out["stimuli"] = pd.read_csv(root / "stimuli.tsv", sep="\t", dtype={"stim_file": str, "split": str})
    return out
