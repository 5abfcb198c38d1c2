"""The shapes real BIDS datasets come in, as options of the simulator: ``bids_recon-sim OUT --shape NAME[,NAME...]``.

Every dataset the tests used to simulate had sessions, equal runs on a regular grid, tidy events and a full set of
fMRIPrep confounds; real datasets do not. A shape changes one such thing and keeps the ground truth exact, so that
the pipeline can be run on it and checked against the truth. Shapes are data: each :class:`Shape` sets a few fields
of a :class:`ShapeSpec` (the merged description of what to write), and two shapes that set the same field, or that
name each other in ``conflicts``, contradict each other (a :class:`~bids_recon.errors.UsageError` naming both).

========== ===============================================================================================
name       what it writes
========== ===============================================================================================
nosessions no ``ses-`` level anywhere (raw and fMRIPrep names, folders, sidecars); truth session ``n/a``
onerun     one run per subject (one per task with ``tasks``); test images repeated inside the run
unequalruns runs of different lengths: trials (and volumes) in the ratios 1.35 : 0.65 : 1.0 (cycled)
tasks      two tasks (``images``, ``objects``), each with its own runs, events and root ``task-X_bold.json``
jitter     onsets jittered off the TR grid: uniform in +-0.45 s, kept to the millisecond
durations  durations drawn per trial, uniform in 1.0-3.0 s (0.1 s steps)
blocks     Haxby et al.'s block design (ds000105): per run one 24-s block per category, one 0.5-s image
           every 2 s (12 rows per block), 12 s rest between blocks; events ``onset duration trial_type``
           (the category), no stimulus column; the truth has one row per events row
messyevents ``n/a`` cells, extra columns (``event_type``, ``response_time``), rows that are not trials
           (fixation, rest, button presses: ``n/a`` stimulus), rows not sorted by onset
dummyscans 3 non-steady-state volumes at the start of each run (x1.8, x1.3, x1.1 brighter, as T1 saturation
           gives; also in global_signal, csf, white_matter) and fMRIPrep's one-hot ``non_steady_state_outlierXX``
fewconfounds confounds with the 6 motion parameters and framewise_displacement only
missingrun the second subject lacks its second run (raw and fMRIPrep)
labels     letters in labels: subjects ``CSI1``, ``CSI2``; sessions ``perceptionA``...; runs unpadded (``run-1``:
           BIDS runs are indices, no letters)
trms       ``RepetitionTime`` in milliseconds (``1500``) in the raw sidecars: valid BIDS, wrong value
========== ===============================================================================================

The BOLD model is the simulator's (:mod:`bids_recon.sim.model`); a shape changes the schedule, the names, the
events, the confounds or the first volumes. The truth (``OUT_groundtruth/sub-XX/sub-XX_trials.tsv``) describes what
was written: one row per trial (session ``n/a`` without sessions, ``task``, the written ``run`` label, ``onset`` and
``duration`` as in the events, ``stimulus``: what the events name the stimulus by, ``category``), rows aligned with
the amplitudes.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from bids_recon.design.repeats import repeat_numbers
from bids_recon.design.table import NO_LABEL, TRIAL_COLUMNS
from bids_recon.errors import UsageError
from bids_recon.registry import Registry
from bids_recon.sim.presets import TASK, SimPreset
from bids_recon.sim.stimuli import CATEGORIES

#: fMRIPrep's six motion parameters.
MOTION6 = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
#: Confound series whose values follow the image intensity (the non-steady-state volumes raise them too).
INTENSITY_CONFOUNDS = ("global_signal", "csf", "white_matter")
#: Second task of the ``tasks`` shape.
SECOND_TASK = "objects"
TASK_DESCRIPTIONS = {
    TASK: "Passive viewing of natural-like images (simulated data).",
    SECOND_TASK: "Viewing of natural-like images while naming the object silently (simulated data).",
}


@dataclass(frozen=True)
class BlockDesign:
    """A block design as in Haxby et al. 2001 (OpenNeuro ds000105).

    Attributes
    ----------
    rows_per_block : int
        Events rows (images) per block.
    row_soa, row_duration : float
        Time between rows and time each image is on (s).
    rest : float
        Rest between blocks (s).
    exemplars : int
        Images per category (each shown once per run, in its category's block).
    """

    rows_per_block: int = 12
    row_soa: float = 2.0
    row_duration: float = 0.5
    rest: float = 12.0
    exemplars: int = 12

    @property
    def block_length(self) -> float:
        return self.rows_per_block * self.row_soa

    def run_volumes(self, preset: SimPreset) -> int:
        """Volumes of one run: lead-in, one block per category with rests between them, lead-out."""
        n = len(CATEGORIES)
        duration = preset.lead_in + n * self.block_length + (n - 1) * self.rest + preset.lead_out
        return math.ceil(duration / preset.tr)


@dataclass(frozen=True)
class ShapeSpec:
    """What the chosen shapes write (the defaults write the simulator's own shape).

    Attributes
    ----------
    names : tuple of str
        The shapes, in the order given.
    sessions : bool
        A ``ses-`` level (False: none anywhere).
    runs_per_task : int or None
        Runs per task and subject (None: the preset's).
    tasks : tuple of str
        Task labels; each has its own runs (``runs_per_task`` or the preset's runs each).
    run_weights : tuple of float or None
        Relative trials per run, cycled over the runs (runs of unequal length).
    onset_jitter : float
        Onsets moved by a uniform amount in ``[-onset_jitter, onset_jitter]`` s, kept to the millisecond.
    durations : tuple of float or None
        Per-trial durations drawn uniformly in this range (s), in 0.1-s steps.
    blocks : BlockDesign or None
        A block design instead of the event-related one.
    messy_events : bool
        Events with ``n/a`` cells, extra columns and rows, not sorted by onset.
    dummy_volumes : tuple of float
        Brightness of the first volumes of each run (one factor per non-steady-state volume).
    confound_columns : tuple of str or None
        The only confound columns written (plus the non-steady-state ones), None: all.
    missing_run : bool
        The second subject lacks its second run.
    subject_format, session_format, run_format : str
        Labels: ``str.format`` with ``number`` (1-based) and ``letter`` (A, B, ...).
    tr_in_ms : bool
        ``RepetitionTime`` of the raw sidecars in milliseconds.
    """

    names: tuple[str, ...] = ()
    sessions: bool = True
    runs_per_task: int | None = None
    tasks: tuple[str, ...] = (TASK,)
    run_weights: tuple[float, ...] | None = None
    onset_jitter: float = 0.0
    durations: tuple[float, float] | None = None
    blocks: BlockDesign | None = None
    messy_events: bool = False
    dummy_volumes: tuple[float, ...] = ()
    confound_columns: tuple[str, ...] | None = None
    missing_run: bool = False
    subject_format: str = "{number:02d}"
    session_format: str = "{number:02d}"
    run_format: str = "{number:02d}"
    tr_in_ms: bool = False

    # -- the design ------------------------------------------------------------------------------------------------

    def preset_overrides(self, preset: SimPreset) -> dict[str, Any]:
        """Preset fields the shapes change (sessions and runs; the block design's timing and stimuli)."""
        n_sessions, n_runs = preset.n_sessions, preset.n_runs
        if not self.sessions:
            n_sessions, n_runs = 1, n_sessions * n_runs
        if self.runs_per_task is not None:
            n_sessions, n_runs = 1, self.runs_per_task
        out: dict[str, Any] = {"n_sessions": n_sessions, "n_runs": n_runs * len(self.tasks)}
        if self.blocks is not None:
            n_images = self.blocks.exemplars * len(CATEGORIES)
            out.update(stim_duration=self.blocks.row_duration, soa=self.blocks.row_soa, n_train=n_images - 1,
                       n_test=1, n_test_repeats=1)
        return out

    def check(self, preset: SimPreset) -> None:
        """Refuse combinations that the preset (after the shapes' changes) cannot give."""
        n_runs = preset.n_sessions * preset.n_runs
        for name, what in (("missingrun", "the second subject would have no run left"),
                           ("unequalruns", "there is no second run to differ from the first")):
            if name in self.names and n_runs < 2:
                cause = " and 'onerun'" if "onerun" in self.names else ""
                raise UsageError(f"shapes '{name}'{cause} contradict each other: one run per subject, so {what} "
                                 "(add 'tasks' for one run per task, or drop one of them)")
        if self.missing_run and preset.n_subjects < 2:
            raise UsageError("shape 'missingrun' needs at least 2 subjects (the second one lacks a run)")

    def run_trials(self, preset: SimPreset) -> list[int] | None:
        """Trials of each run when runs differ in length (None: as even as possible)."""
        if self.run_weights is None:
            return None
        n_runs = preset.n_sessions * preset.n_runs
        weights = np.resize(np.asarray(self.run_weights, float), n_runs)
        exact = preset.n_trials * weights / weights.sum()
        counts = np.floor(exact).astype(int)
        for r in np.argsort(counts - exact, kind="stable")[: preset.n_trials - int(counts.sum())]:
            counts[r] += 1
        return [int(c) for c in counts]

    def run_name(self, preset: SimPreset, key: tuple[str, str]) -> RunName:
        """The written labels of the schedule's run ``key`` (``("01", "03")``: zero-padded, 1-based)."""
        ses_index, run_index = int(key[0]) - 1, int(key[1]) - 1
        per_task = preset.n_runs // len(self.tasks)
        task_index, within = divmod(run_index, per_task)
        session = self.session_format.format(number=ses_index + 1, letter=_letter(ses_index)) if self.sessions \
            else None
        run = self.run_format.format(number=within + 1, letter=_letter(within))
        return RunName(session, self.tasks[task_index], run)

    def subject_label(self, index: int) -> str:
        return self.subject_format.format(number=index + 1, letter=_letter(index))

    def is_missing(self, subject_index: int, run_index: int) -> bool:
        """Whether a run is left out (the second subject's second run with ``missingrun``)."""
        return self.missing_run and subject_index == 1 and run_index == 1

    def block_schedule(self, rng: np.random.Generator, preset: SimPreset, stim_table: pd.DataFrame,
                       subject: str) -> pd.DataFrame:
        """Trials of a block design: per run, every category's block in a random order, its exemplars shuffled.

        Returns
        -------
        pandas.DataFrame
            The columns of :func:`bids_recon.sim.design.make_schedule`'s trials.
        """
        b = self.blocks
        assert b is not None
        by_category = {c: stim_table.loc[stim_table["category"] == c, "stim_id"].to_numpy() for c in CATEGORIES}
        files = dict(zip(stim_table["stim_id"], stim_table["stim_file"], strict=True))
        splits = dict(zip(stim_table["stim_id"], stim_table["split"], strict=True))
        rows = []
        for r in range(preset.n_sessions * preset.n_runs):
            ses, run = divmod(r, preset.n_runs)
            k = 0
            for block, category in enumerate(rng.permutation(np.asarray(CATEGORIES))):
                start = preset.lead_in + block * (b.block_length + b.rest)
                for j, sid in enumerate(rng.permutation(by_category[str(category)])[: b.rows_per_block]):
                    rows.append({"subject": subject, "session": f"{ses + 1:02d}", "run": f"{run + 1:02d}",
                                 "trial_index": k, "onset": float(start + j * b.row_soa),
                                 "duration": float(b.row_duration), "stim_id": int(sid), "stim_file": files[sid],
                                 "split": splits[sid]})
                    k += 1
        trials = pd.DataFrame(rows)
        trials.insert(8, "repeat", repeat_numbers(trials["stim_id"]))
        return trials

    def edit_timing(self, trials: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Jitter the onsets and draw the durations (before the BOLD is simulated from them)."""
        out = trials.copy()
        if self.onset_jitter:
            shift = rng.uniform(-self.onset_jitter, self.onset_jitter, len(out))
            out["onset"] = np.round(out["onset"].to_numpy(float) + shift, 3)
        if self.durations is not None:
            lo, hi = self.durations
            out["duration"] = np.round(rng.uniform(lo, hi, len(out)), 1)  # on the model's 0.1-s lag grid
        return out

    # -- one run ---------------------------------------------------------------------------------------------------

    def edit_bold(self, data: np.ndarray) -> np.ndarray:
        """Brighten the first volumes (non-steady state), shape (n_vols, n_vox) intensities."""
        if not self.dummy_volumes:
            return data
        out = data.copy()
        factors = np.asarray(self.dummy_volumes, dtype=out.dtype)
        out[: len(factors)] *= factors[:, None]
        return out

    def edit_confounds(self, table: pd.DataFrame) -> pd.DataFrame:
        """The confounds as fMRIPrep would write them for this run (non-steady-state columns, fewer columns)."""
        out = table.copy()
        if self.dummy_volumes:
            factors = np.ones(len(out))
            factors[: len(self.dummy_volumes)] = self.dummy_volumes
            for name in INTENSITY_CONFOUNDS:
                x = out[name].to_numpy(float) * factors
                d = np.concatenate([[np.nan], np.diff(x)])
                out[name], out[f"{name}_derivative1"] = x, d
                out[f"{name}_power2"], out[f"{name}_derivative1_power2"] = x**2, d**2
            for k in range(len(self.dummy_volumes)):
                column = np.zeros(len(out))
                column[k] = 1.0
                out[f"non_steady_state_outlier{k:02d}"] = column
        if self.confound_columns is not None:
            keep = [c for c in out.columns if c in self.confound_columns or c.startswith("non_steady_state_outlier")]
            out = out[keep]
        return out

    def events(self, trials: pd.DataFrame, stim_table: pd.DataFrame, preset: SimPreset, n_vols: int,
               rng: np.random.Generator) -> pd.DataFrame:
        """The events table of one run (``trials``: the run's rows of the schedule)."""
        onset, duration = trials["onset"].to_numpy(float), trials["duration"].to_numpy(float)
        if self.blocks is not None:
            category = dict(zip(stim_table["stim_id"], stim_table["category"], strict=True))
            table = pd.DataFrame({"onset": onset, "duration": duration,
                                  "trial_type": [category[s] for s in trials["stim_id"]]})
            stimulus = "trial_type"
        else:
            table = pd.DataFrame({"onset": onset, "duration": duration, "trial_type": "image",
                                  "stim_file": trials["stim_file"].to_numpy()})
            stimulus = "stim_file"
        if not self.messy_events:
            return table
        return _messy(table, stimulus, n_vols * preset.tr, rng)

    # -- after the runs --------------------------------------------------------------------------------------------

    def truth_trials(self, preset: SimPreset, trials: pd.DataFrame, stim_table: pd.DataFrame,
                     keep: np.ndarray) -> pd.DataFrame:
        """The ground truth's trial table: the written labels, the task, what the events name the stimulus by.

        Parameters
        ----------
        trials : pandas.DataFrame
            The schedule (labels as the model keys its runs).
        keep : ndarray of bool, shape (n_trials,)
            Rows of runs that were written.
        """
        names = [self.run_name(preset, (s, r)) for s, r in zip(trials["session"], trials["run"], strict=True)]
        category = dict(zip(stim_table["stim_id"], stim_table["category"], strict=True))
        out = trials.copy()
        out["session"] = [n.session if n.session is not None else NO_LABEL for n in names]
        out.insert(2, "task", [n.task for n in names])
        out["run"] = [n.run for n in names]
        out["category"] = [category[s] for s in out["stim_id"]]
        out["stimulus"] = out["category"] if self.blocks is not None else out["stim_file"]
        out = out[keep].reset_index(drop=True)
        out["repeat"] = repeat_numbers(out["stimulus"])
        # the trial table's columns, with what the events name the stimulus by and its category before the repeat
        columns = TRIAL_COLUMNS[:-2] + ["stimulus", "category"] + TRIAL_COLUMNS[-2:]
        return out[columns + [c for c in out.columns if c not in columns]]

    def run_args(self) -> list[str]:
        """``bids_recon`` flags this shape of data needs (the stimulus column of a block design, the tasks)."""
        args = []
        if len(self.tasks) > 1:
            args += ["--task-id", *self.tasks]
        if self.blocks is not None:
            args += ["--stimulus-column", "trial_type"]
        return args

    def design_text(self, preset: SimPreset, n_subjects: int) -> str:
        """The README's paragraph on what the subjects saw."""
        if self.blocks is not None:
            b = self.blocks
            seen = (f"{n_subjects} subjects saw blocks of synthetic images ({b.exemplars} images of each of "
                    f"{len(CATEGORIES)} object categories): in every run one {b.block_length:g}-s block per "
                    f"category, one image every {b.row_soa:g} s for {b.row_duration:g} s, {b.rest:g} s rest "
                    "between blocks (a block design as in Haxby et al. 2001); the events name the category in "
                    "trial_type.")
        else:
            seen = (f"{n_subjects} subjects each saw {preset.n_stimuli} synthetic images (a coloured object of one of "
                    f"{len(CATEGORIES)} categories on a textured background): {preset.n_train} training images once "
                    f"and {preset.n_test} test images {preset.n_test_repeats} times, one image every about "
                    f"{preset.soa:g} s. The images are in stimuli/ (events.tsv column stim_file), with 2-3 captions "
                    "per image in stimuli/captions.tsv.")
        runs = preset.n_sessions * preset.n_runs
        text = textwrap.fill(f"{seen} {runs} run(s) per subject, task(s) {', '.join(self.tasks)}, TR {preset.tr} s.",
                             width=110)
        return (f"{text}\n\nShapes of real data simulated here (bids_recon-sim --shape {','.join(self.names)}):\n"
                + "".join(textwrap.fill(f"- {n}: {SHAPES[n].summary}", width=110, subsequent_indent="  ") + "\n"
                          for n in self.names)).rstrip("\n")

    def finish(self, bids_dir: Path, truth_dir: Path, preset: SimPreset, seed: int) -> None:
        """Sidecars and descriptions after every run is written (root task sidecars, events JSON, TR in ms)."""
        for path in bids_dir.glob("task-*_events.json"):
            path.unlink()
        for task in self.tasks:
            _write_json(bids_dir / f"task-{task}_events.json", self.events_sidecar())
        if len(self.tasks) > 1:  # one root sidecar per task, inherited by its runs
            for path in bids_dir.glob("sub-*/**/func/*_bold.json"):
                path.unlink()
            for task in self.tasks:
                _write_json(bids_dir / f"task-{task}_bold.json", {
                    "RepetitionTime": preset.tr, "TaskName": task, "TaskDescription": TASK_DESCRIPTIONS[task],
                    "Instructions": "Look at the images and keep your eyes on the central fixation dot."})
        if self.tr_in_ms:
            for path in [*bids_dir.glob("task-*_bold.json"), *bids_dir.glob("sub-*/**/func/*_bold.json")]:
                meta = json.loads(path.read_text())
                if "RepetitionTime" in meta:
                    meta["RepetitionTime"] = int(round(float(meta["RepetitionTime"]) * 1000))
                    _write_json(path, meta)
        description = bids_dir / "dataset_description.json"
        meta = json.loads(description.read_text())
        meta["Name"] += f", shapes {','.join(self.names)}"
        for entry in meta.get("GeneratedBy", []):
            if "Description" in entry:
                entry["Description"] = entry["Description"].replace(")", f", shapes={list(self.names)!r})")
        _write_json(description, meta)
        simulation = truth_dir / "simulation.json"
        meta = json.loads(simulation.read_text())
        meta["shapes"] = list(self.names)
        _write_json(simulation, meta)
        with (truth_dir / "README.md").open("a") as handle:
            handle.write(TRUTH_SHAPES.format(shapes=", ".join(self.names)))

    def events_sidecar(self) -> dict[str, dict[str, Any]]:
        """``task-X_events.json``: the columns the events have."""
        meta: dict[str, dict[str, Any]] = {
            "onset": {"Description": "Image onset relative to the first volume", "Units": "s"},
            "duration": {"Description": "Time the image was on the screen", "Units": "s"},
        }
        if self.blocks is not None:
            meta["trial_type"] = {"Description": "Category of the image shown (one block per category and run)",
                                  "Levels": {c: f"an image of a {c}" for c in CATEGORIES}}
        else:
            levels = {"image": "an image was shown"}
            if self.messy_events:
                levels.update(MESSY_LEVELS)
            meta["trial_type"] = {"Description": "Type of event", "Levels": levels}
            meta["stim_file"] = {"Description": "The image shown, relative to the stimuli/ folder (n/a: none)"}
        if self.messy_events:
            meta["event_type"] = {"Description": "What the row records",
                                  "Levels": {"stimulus": "an image was shown", **MESSY_LEVELS}}
            meta["response_time"] = {"Description": "Time from the image onset to the button press (n/a: none)",
                                     "Units": "s"}
        return meta


class RunName(NamedTuple):
    """The labels a run is written with (``session`` None: no ``ses-`` level)."""

    session: str | None
    task: str
    run: str


#: Rows of the ``messyevents`` shape that are not trials.
MESSY_LEVELS = {"fixation": "fixation cross before the first image", "rest": "rest after the last image",
                "response": "a button press (no image)"}


def _letter(index: int) -> str:
    return chr(ord("A") + index % 26) * (1 + index // 26)


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _messy(table: pd.DataFrame, stimulus: str, run_end: float, rng: np.random.Generator) -> pd.DataFrame:
    """Events as real files often are: extra columns with ``n/a``, rows that are not trials, not sorted by onset.

    A quarter of the images get a button press (a ``response`` row with ``n/a`` stimulus at the image onset plus
    the response time); a ``fixation`` row before the first image and a ``rest`` row after the last; the rows are
    listed images first, then presses, then fixation and rest (so not by onset).
    """
    other = "trial_type" if stimulus != "trial_type" else None
    images = table.copy()
    n = len(images)
    pressed = rng.uniform(size=n) < 0.25
    rt = np.round(rng.uniform(0.4, 1.2, n), 3)
    images["event_type"] = "stimulus"
    images["response_time"] = np.where(pressed, rt, np.nan)
    onset, duration = images["onset"].to_numpy(float), images["duration"].to_numpy(float)
    presses = pd.DataFrame({"onset": np.round(onset[pressed] + rt[pressed], 3), "duration": 0.0,
                            "event_type": "response", "response_time": np.nan})
    end = float(np.max(onset + duration))
    edges = pd.DataFrame({"onset": [0.0, round(end, 3)],
                          "duration": [float(onset.min()), round(run_end - round(end, 3), 3)],
                          "event_type": ["fixation", "rest"], "response_time": np.nan})
    rows = [images, presses, edges]
    for part in rows[1:]:
        part[stimulus] = np.nan
        if other is not None:
            part[other] = part["event_type"]
    columns = list(images.columns)
    return pd.concat(rows, ignore_index=True)[columns]


#: Appended to the ground truth's README.md when shapes were simulated.
TRUTH_SHAPES = """
## Shapes

This dataset was simulated with the shapes {shapes} (`bids_recon.sim.shapes` describes each). The trial tables
`sub-XX/sub-XX_trials.tsv` then describe what was written: `session` is `n/a` without a `ses-` level, `task` is the
run's task, `run` its written label, `onset` and `duration` are the events' values (onsets jittered to the
millisecond are simulated on the model's 0.1-s lag grid), `stimulus` is what the events name the stimulus by
(`stim_file`, or the category in `trial_type` for a block design), `category` the object's category, `repeat`
counts earlier presentations of the same `stimulus`; rows of runs left out (`missingrun`) are not there, and the rows
of `amplitudes` in `sub-XX_truth.npz` follow these rows. Events rows that are not trials (`messyevents`: fixation,
rest, button presses) have no row. `ncsnr_target` is computed for the schedule's design with the 9 base confounds
(fewer are written with `fewconfounds`; the non-steady-state volumes of `dummyscans` are not part of it).
"""


@dataclass(frozen=True)
class Shape:
    """One shape of real data.

    Attributes
    ----------
    name : str
        As given to ``--shape``.
    summary : str
        One line for ``--help`` and the docs.
    sets : dict
        The :class:`ShapeSpec` fields this shape sets.
    conflicts : dict
        Shapes this one contradicts -> why (listed by one of the two).
    valid_bids : bool
        Whether the written dataset is valid BIDS with the right values (``trms`` is not: it must be refused).
    """

    name: str
    summary: str
    sets: dict[str, Any] = field(default_factory=dict)
    conflicts: dict[str, str] = field(default_factory=dict)
    valid_bids: bool = True


#: The shapes by name.
SHAPES: Registry = Registry("simulation shape")


def _add(shape: Shape) -> None:
    known = {f.name for f in fields(ShapeSpec)}
    if not set(shape.sets) <= known:
        raise ValueError(f"shape {shape.name} sets unknown fields {sorted(set(shape.sets) - known)}")
    SHAPES[shape.name] = shape


for _shape in (
    Shape("nosessions", "no ses- level anywhere (raw and fMRIPrep names, folders, sidecars)", {"sessions": False}),
    Shape("onerun", "one run per subject (one per task with 'tasks'); the test images repeat inside it",
          {"runs_per_task": 1}),
    Shape("unequalruns", "runs of different lengths (trials and volumes in the ratios 1.35 : 0.65 : 1.0, cycled)",
          {"run_weights": (1.35, 0.65, 1.0)}),
    Shape("tasks", f"two tasks ({TASK}, {SECOND_TASK}), each with its own runs, events and root task-X_bold.json",
          {"tasks": (TASK, SECOND_TASK)}),
    Shape("jitter", "onsets jittered off the TR grid (uniform in +-0.45 s, to the millisecond)",
          {"onset_jitter": 0.45}),
    Shape("durations", "variable durations per trial (uniform in 1.0-3.0 s, 0.1-s steps)", {"durations": (1.0, 3.0)}),
    Shape("blocks", "a block design as in Haxby et al. (ds000105): one 0.5-s image every 2 s, 12 rows per block, "
          "trial_type = the category, each category one block per run; no stimulus column",
          {"blocks": BlockDesign()},
          conflicts={"durations": "a block design's images all last 0.5 s",
                     "unequalruns": "every run of a block design holds one block per category"}),
    Shape("messyevents", "events with n/a cells, extra columns (event_type, response_time), rows that are not trials "
          "(fixation, rest, button presses: n/a stimulus), rows not sorted by onset", {"messy_events": True}),
    Shape("dummyscans", "3 bright non-steady-state volumes at the start of each run and fMRIPrep's "
          "non_steady_state_outlierXX confound columns", {"dummy_volumes": (1.8, 1.3, 1.1)}),
    Shape("fewconfounds", "confounds with the 6 motion parameters and framewise_displacement only",
          {"confound_columns": (*MOTION6, "framewise_displacement")}),
    Shape("missingrun", "the second subject lacks its second run (raw and fMRIPrep)", {"missing_run": True}),
    Shape("labels", "letters in labels: subjects CSI1, CSI2; sessions perceptionA, perceptionB; runs unpadded "
          "(run-1)", {"subject_format": "CSI{number}", "session_format": "perception{letter}",
                      "run_format": "{number}"}),
    Shape("trms", "RepetitionTime in milliseconds (1500) in the raw sidecars: valid BIDS, wrong value; the pipeline "
          "must refuse it", {"tr_in_ms": True}, valid_bids=False),
):
    _add(_shape)


def parse_shapes(values: str | Iterable[str] | None) -> list[str]:
    """Shape names from ``"a,b"`` or ``["a,b", "c"]`` (order kept, duplicates dropped)."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    names = [n.strip() for item in items for n in str(item).split(",") if n.strip()]
    return list(dict.fromkeys(names))


def resolve_shapes(values: str | Sequence[str] | None) -> ShapeSpec | None:
    """The merged :class:`ShapeSpec` of the named shapes (None when there are none).

    Raises
    ------
    UsageError
        An unknown shape (naming the known ones), or two shapes that contradict each other (naming both).
    """
    names = parse_shapes(values)
    if not names:
        return None
    chosen = [SHAPES.named(n, prefix="--shape: ") for n in names]
    set_by: dict[str, str] = {}
    changes: dict[str, Any] = {}
    for i, shape in enumerate(chosen):
        for other in chosen[:i]:
            why = shape.conflicts.get(other.name) or other.conflicts.get(shape.name)
            if why:
                raise UsageError(f"shapes '{other.name}' and '{shape.name}' contradict each other: {why}")
        for key, value in shape.sets.items():
            if key in set_by:
                raise UsageError(f"shapes '{set_by[key]}' and '{shape.name}' contradict each other: both set {key}")
            set_by[key] = shape.name
            changes[key] = value
    return replace(ShapeSpec(), names=tuple(names), **changes)


def shape_table() -> str:
    """One line per shape (for ``--help``)."""
    return "; ".join(f"{s.name}: {s.summary}" for s in SHAPES.values())


__all__ = ["SHAPES", "BlockDesign", "RunName", "Shape", "ShapeSpec", "parse_shapes", "resolve_shapes"]
