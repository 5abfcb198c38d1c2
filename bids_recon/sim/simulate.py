"""Write a whole simulated dataset; read its ground truth back."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import MissingInputError, UsageError
from bids_recon.sim.anatomy import make_affine, make_anatomy
from bids_recon.sim.design import make_schedule, run_length, run_plan_volumes
from bids_recon.sim.layouts import LayoutContext, SimLayout, get_layout
from bids_recon.sim.model import CONFOUND_BASE, SubjectModel, bold_run, make_confounds, simulate_subject
from bids_recon.sim.presets import PRESETS, SimPreset
from bids_recon.sim.shapes import ShapeSpec, resolve_shapes
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
_STIMULI, _SUBJECT, _RUN, _DATASET, _LAYOUT, _SHAPE = 0, 1, 2, 3, 4, 6


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
    layout : str
        The dataset layout written (see :mod:`bids_recon.sim.layouts`).
    stores_dir : Path or None
        ``<OUT>_stimuli``: what the layout's dataset keeps outside its BIDS tree (images, captions).
    run_args : list of str
        ``bids_recon`` flags that run on this layout (its ``--dataset`` preset and the stores' paths).
    subjects : list of str
        Subject labels ("01", ...).
    task : str
        Task label (the labels joined when there are several).
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
    stores_dir: Path | None = None
    run_args: list[str] | None = None
    shapes: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)


def output_paths(out_dir: str | Path) -> tuple[Path, Path, Path]:
    """The three folders a simulation writes: ``(bids_dir, truth_dir, templateflow_dir)`` (absolute).

    ``bids_dir`` is ``OUT``; a layout may put the raw dataset in a folder of it (NSD: ``OUT/nsddata_rawdata``) and
    its stores in ``OUT_stimuli`` (:func:`stores_path`).
    """
    bids_dir = Path(out_dir).expanduser().absolute()
    return bids_dir, Path(f"{bids_dir}_groundtruth"), Path(f"{bids_dir}_templateflow")


def stores_path(out_dir: str | Path) -> Path:
    """``OUT_stimuli``: images and captions a layout's dataset distributes outside its BIDS tree."""
    return Path(f"{Path(out_dir).expanduser().absolute()}_stimuli")


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


def resolve_simulation(
    preset: str | SimPreset = "tiny", layout: str = "bids", shapes: str | list[str] | None = None,
    **overrides: object,
) -> tuple[SimLayout, ShapeSpec | None, SimPreset]:
    """The layout, the shapes and the preset a simulation would use, checked (nothing is written).

    Raises
    ------
    UsageError
        Unknown preset, setting, layout or shape; shapes that contradict each other or the preset; shapes with a
        public dataset's layout.
    """
    spec = resolve_shapes(shapes)
    lay = get_layout(layout)
    if spec is not None and lay.name != "bids":
        raise UsageError(f"--shape works with the simulator's own layout (bids), not with --layout {lay.name}")
    p = _resolve_preset(preset, {**lay.overrides, **overrides})
    if spec is not None:
        p = _resolve_preset(p, spec.preset_overrides(p))
        spec.check(p)
    return lay, spec, p


def simulate_dataset(
    out_dir: str | Path, preset: str | SimPreset = "tiny", seed: int = 0, layout: str = "bids",
    shapes: str | list[str] | None = None, **overrides: object,
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
        ``bids`` (the simulator's layout) or a public dataset's (``nsd``, ``things``, ``bold5000``, ``god``,
        ``nod``; see :mod:`bids_recon.sim.layouts`), or ``faces`` (faces generated from known latents, for
        ``--generator latent``: :mod:`bids_recon.sim.faces`); a layout may change the preset's sessions and sizes.
    shapes : str or list of str, optional
        Shapes real datasets come in (``"nosessions,jitter"`` or a list; :mod:`bids_recon.sim.shapes`), with the
        simulator's own layout only; none (the default) writes the simulator's own shape.
    **overrides
        Preset fields to change, e.g. ``n_subjects=1``.

    Returns
    -------
    SimulatedDataset

    Raises
    ------
    UsageError
        Unknown preset, setting or shape, shapes that contradict each other, bad seed, or an output folder that is
        not empty.
    """
    lay, spec, p = resolve_simulation(preset, layout, shapes, **overrides)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    root, truth_dir, tf_dir = output_paths(out_dir)
    stores_dir = stores_path(out_dir)
    for d in (root, truth_dir, tf_dir, stores_dir):
        if _is_nonempty(d):
            raise UsageError("output folder exists and is not empty (use a new folder or --overwrite)", d)
    tmp = {d: d.with_name(d.name + ".partial") for d in (root, truth_dir, tf_dir, stores_dir)}
    for t in tmp.values():
        if t.exists():
            shutil.rmtree(t)
        t.mkdir(parents=True)
    tb, tt, ttf = tmp[root] / lay.bids_subdir, tmp[truth_dir], tmp[tf_dir]
    bids_dir = root / lay.bids_subdir
    fmriprep_tmp = tb / "derivatives" / "fmriprep"
    layout_rng = np.random.default_rng([seed, _LAYOUT])

    subjects = [(spec or lay).subject_label(i) for i in range(p.n_subjects)]
    anat = make_anatomy(p.grid, p.voxel_size, p.early_fraction, p.higher_fraction)
    stim = lay.make_stimuli(np.random.default_rng([seed, _STIMULI]), p)
    stim.table["stim_file"] = lay.stimulus_names(stim.table, layout_rng)
    blocks = spec is not None and spec.blocks is not None
    if blocks:  # every image is shown once per run
        stim.table["split"], stim.table["n_repeats"] = "test", p.n_sessions * p.n_runs
    write_raw_toplevel(tb, p, seed, stim, subjects, np.random.default_rng([seed, _DATASET]),
                       lay.bids_stimuli and not blocks, None if spec is None else spec.design_text(p, len(subjects)))
    write_fmriprep_toplevel(fmriprep_tmp, tb)
    write_templateflow(ttf, anat, p)
    native_affine = make_affine(tuple(s // 2 for s in p.grid), 2 * p.voxel_size)

    models: list[SubjectModel] = []
    for i, sub in enumerate(subjects):
        run_trials = None if spec is None else spec.run_trials(p)
        n_vols = run_length(p)[1] if run_trials is None else run_plan_volumes(p, run_trials)
        if blocks:
            n_vols = spec.blocks.run_volumes(p)
        shared, confounds = make_confounds(np.random.default_rng([seed, _SUBJECT, i, 0]), p, n_vols)
        base = {k: v[list(CONFOUND_BASE)].to_numpy() for k, v in confounds.items()}
        if blocks:
            trials = spec.block_schedule(np.random.default_rng([seed, _SUBJECT, i, 1]), p, stim.table, sub)
        else:
            trials, _ = make_schedule(np.random.default_rng([seed, _SUBJECT, i, 1]), p, stim.table, sub, base,
                                      lay.test_only_runs, run_trials)
        if spec is not None:
            trials = spec.edit_timing(trials, np.random.default_rng([seed, _SHAPE, i]))
        sessions = {f"{s + 1:02d}": lay.session_label(s) for s in range(p.n_sessions)}
        trials["session"] = trials["session"].map(sessions)
        shared = {(sessions[s], r): v for (s, r), v in shared.items()}
        confounds = {(sessions[s], r): v for (s, r), v in confounds.items()}
        trials = lay.edit_schedule(trials, stim.table, np.random.default_rng([seed, _LAYOUT, i]))
        model = simulate_subject(
            p, anat, stim.images, stim.table, trials, n_vols, sub, shared, confounds,
            np.random.default_rng([seed, _SUBJECT, i, 2]), lay.stimulus_features(stim),
        )  # fmt: skip
        runs = trials[["session", "run"]].drop_duplicates().itertuples(index=False)
        written = np.ones(len(trials), dtype=bool)
        for r, (ses, run) in enumerate(runs):
            events = trials[(trials["session"] == ses) & (trials["run"] == run)]
            if spec is not None and spec.is_missing(i, r):
                written[events.index.to_numpy()] = False
                continue
            data = bold_run(model, p, ses, run, np.random.default_rng([seed, _RUN, i, r]))
            if spec is None:
                names, conf, table = (ses, lay.task(ses), run), None, lay.events(events, p, n_vols)
            else:
                data = spec.edit_bold(data)
                name = spec.run_name(p, (ses, run))
                names, conf = (name.session, name.task, name.run), spec.edit_confounds(model.confounds[(ses, run)])
                table = spec.events(events, stim.table, p, model.run_volumes(ses, run),
                                    np.random.default_rng([seed, _SHAPE, i, r]))
            vol = to_volume(data, model.mask, np.int16)
            write_raw_run(tb, p, sub, names[0], names[2], np.rint(block_mean(vol)).astype(np.int16), native_affine,
                          events, names[1], table)
            write_fmriprep_run(fmriprep_tmp, p, model, names[0], names[2], vol, anat.affine, names[1], conf)
        if spec is not None:  # the truth describes what was written
            model.trials = spec.truth_trials(p, trials, stim.table, written)
            model.amplitudes = model.amplitudes[written]
        models.append(model)
    write_truth(tt, p, seed, stim, models)
    if spec is None:
        lay.finish(LayoutContext(tmp[root], tb, tmp[stores_dir], tt, p, seed, stim, models, layout_rng,
                                 anat=anat))
    else:  # the published betas of the bids layout are not written for shaped data
        spec.finish(tb, tt, p, seed)

    for final, t in tmp.items():
        if final.exists():
            final.rmdir()  # empty (checked above)
        if final == stores_dir and not any(t.iterdir()):
            t.rmdir()  # this layout keeps nothing outside the dataset
            continue
        t.rename(final)
    tasks = sorted({lay.task(lay.session_label(s)) for s in range(p.n_sessions)})
    if spec is not None:
        tasks = list(spec.tasks)
    return SimulatedDataset(
        bids_dir=bids_dir,
        fmriprep_dir=bids_dir / "derivatives" / "fmriprep",
        truth_dir=truth_dir,
        templateflow_dir=tf_dir,
        subjects=subjects,
        task=tasks[0] if len(tasks) == 1 else "".join(tasks),
        preset=p,
        seed=seed,
        layout=lay.name,
        stores_dir=stores_dir if stores_dir.exists() else None,
        run_args=lay.run_args(bids_dir, stores_dir) + ([] if spec is None else spec.run_args()),
        shapes=[] if spec is None else list(spec.names),
        tasks=tasks,
    )


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
        ``response``). Labels (subject, session, task, run) are strings as written (zero-padded by default; session
        ``n/a`` in a dataset without sessions).

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
    str_cols = {"subject": str, "session": str, "task": str, "run": str, "stim_file": str, "stimulus": str,
                "split": str}
    path = root / f"sub-{label}" / f"sub-{label}_trials.tsv"
    header = pd.read_csv(path, sep="\t", nrows=0).columns
    # labels stay text ("n/a" is the session of a dataset without sessions); other cells: n/a is missing
    missing = {c: ["n/a", ""] for c in header if c not in ("subject", "session", "task", "run")}
    out["trials"] = pd.read_csv(path, sep="\t", dtype={c: t for c, t in str_cols.items() if c in header},
                                keep_default_na=False, na_values=missing)
    out["stimuli"] = pd.read_csv(root / "stimuli.tsv", sep="\t", dtype={"stim_file": str, "split": str})
    return out
