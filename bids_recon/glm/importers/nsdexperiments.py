"""``nsdsynthetic`` and ``nsdimagery``: the single-trial betas NSD published for its two further experiments.

The same 8 participants as NSD's core experiment, one 7T session each, in the same ``func1pt8mm`` voxel space (so a
decoder trained on the core experiment applies to them: ``--decoders-from``). Both importers are
:class:`~bids_recon.glm.importers.nsd.NsdImporter` with another betas folder and another design: the root, the
participants, the header reading (NIfTI or HDF5 with its axes reversed), the ROI-only voxel reading, the int16 /
300 scale and the brain mask (``nsddata/ppdata/subjNN/func1pt8mm/brainmask.nii.gz``, the core experiment's) are
NsdImporter's own. One session each, labelled ``nsdsynthetic`` / ``nsdimagery``.

Facts used, and where they were read ([V] read in the manual or in code that reads the files; [R] from one
third-party source or inferred, not checked against a real file):

``--betas nsdsynthetic=ROOT``

- 1 session, 8 runs alternating fixation / one-back, 284 distinct images, 93 stimulus trials a run (83 + 10
  one-back repeats), 744 trials; same images and order for all participants [V: NSD manual, "Functional data
  (nsdsynthetic)", https://cvnlab.slite.page/p/wLlJyfWRvg/Functional-data-nsdsynthetic].
- betas ``nsddata_betas/ppdata/subjNN/func1pt8mm/nsdsyntheticbetas_fithrf_GLMdenoise_RR/betas_nsdsynthetic.nii.gz``,
  int16, divided by 300 [V: gifale95/RNC, the OOD encoding-accuracy script of Gifford et al.'s NSD-synthetic
  analysis, which loads it, ``/ 300``, and indexes its last axis by ``masterordering``]. ``.hdf5`` (``betas``,
  axes reversed as NSD's core ``betas_sessionNN.hdf5``) is accepted too [R: by analogy with the core experiment];
  ``betas_nsdsynthetic.mat`` [R: Ashsr/NaselarisLab ``NSD_Synthetic_Access/NSDS_Access.py``] is not read.
- trial order ``nsddata/experiments/nsdsynthetic/nsdsynthetic_expdesign.mat``: ``masterordering`` (744, 1-based
  image numbers 1..284, beta ``t`` shows image ``masterordering[t]``) [V: gifale95/RNC, Ashsr/NaselarisLab,
  several others]; ``stimpattern`` (1 x 8 runs x slots, 1 where a stimulus trial is) [V: NSDS_Access.py reads
  ``stimpattern[0][run][slot]``]; runs 1, 3, 5, 7 fixation and 2, 4, 6, 8 one-back [R: NSDS_Access.py,
  ``i % 2 == 0`` -> fixation]. One-back repeats: a trial showing the image of the trial before it
  (``np.diff(masterordering) == 0``) [V: NSDS_Access.py].
- stimulus ids: the image number as text (``"17"``) for images 1..220, read from
  ``nsddata_stimuli/stimuli/nsdsynthetic/nsdsynthetic_stimuli.hdf5`` (``imgBrick``, shared by all participants);
  images 221..284 are per participant, ``nsdsynthetic_colorstimuli_subjNN.hdf5`` row ``number - 221`` [V:
  gifale95/RNC loads the 220 then the 64 of ``nsdsynthetic_colorstimuli_subj0S.hdf5``; NSDS_Access.py indexes
  ``< 220`` / ``- 220`` 0-based], so their ids name the participant: ``"221_subj01"``.

``--betas nsdimagery=ROOT``

- 1 session, 12 runs of 48 trials; tasks vision, attention and imagery on three sets of 6 targets (A simple, B
  naturalistic, C conceptual); the imagery runs twice [V: NSD manual, "Functional data (nsdimagery)",
  https://cvnlab.slite.page/p/oS386H_KfZF4-s/Functional-data-nsdimagery].
- betas ``nsddata_betas/ppdata/subjNN/func1pt8mm/nsdimagerybetas_fithrf_GLMdenoise_RR/betas_nsdimagery.hdf5``:
  720 betas, not 576: an attention trial has two (its cue epoch and its detection epoch), so 3 x 48 vision + 6 x
  48 imagery + 3 x 96 attention [V: code of several NSD-Imagery users, one checking the 720 against
  ``nsddata/experiments/nsdimagery/designmatrixGLMsingle.mat``, 96 events in each attention run].
  ``betas_nsdimagery.nii.gz`` (81 x 104 x 83 x 720 for subj01) is accepted too [V for the ``nsdimagerybetas_fithrf``
  folder, read by the NSD-Imagery authors' MindEye code; R for ``..._GLMdenoise_RR``].
- run order of the betas: visA, attA, imgA_1, visB, attB, imgB_1, visC, attC, imgC_1, imgA_2, imgB_2, imgC_2 [V:
  two independent loaders (an NSD_Imagery_Dataset class indexing ``lh.betas_nsdimagery.mgh`` this way; a
  row-mapping note citing manual v1.6 and the ``RUN`` column of the behavioural files); one third source lists
  imgA_1, attA, visA... (unverified, conflicting)]. The ``RUN`` column of the behavioural files orders the runs
  when present; :data:`IMAGERY_RUNS` otherwise.
- trials ``nsddata/bdata/nsdimagery/nsdimagery_subjNN_{run}.tsv``, 48 rows, columns ``SUBJECT SESSION RUN TRIAL
  CONDITION CUE FRAMEFILE ...`` [V: file names and ``CONDITION``; R: the full column list, from a test's mock];
  ``CONDITION`` is the target's cue letter (what is seen or imagined), ``CUE`` the letter shown (in vision trials
  it matches the target half the time) [V: manual; the letter -> target table is in
  :mod:`bids_recon.features.resolvers.nsdexperiments`]. Betas within a run follow ``TRIAL`` (GLMsingle writes
  single-trial betas in the order the trials happened); an attention trial's two betas are its cue then its
  detection epoch [R: inferred from that order; one third-party note claims betas grouped by condition within a
  run instead: not verified].

Which trials are decoded (``decode=``): vision and imagery trials of sets A and B (default ``decode=vision,imagery``);
their stimulus ids name the condition (``vision-H``, ``imagery-H``) so the repeat average of a test stimulus never
mixes seen and imagined trials: the two are separate stimulus groups, each decoded and scored on its own. Set C
(words: no target image) and attention trials are modelled but never decoded (split ``none``). The per-trial
metadata (``condition``, ``phase``, ``cue``, ``target``, ``stimulus_set``, ``run_name``) can drive a
``--test-split COLUMN=VALUE`` rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.glm.importers import register
from bids_recon.glm.importers.base import BetaFile, ImportedSession, ImportPlan, session_trials, wanted_sessions
from bids_recon.glm.importers.nsd import NsdImporter, pattern_positions

#: nsdsynthetic: trials a run, runs, images shared by all participants (the rest are per participant).
SYNTHETIC_TRIALS_PER_RUN = 93
SYNTHETIC_RUNS = 8
SYNTHETIC_SHARED_IMAGES = 220
SYNTHETIC_IMAGES = 284
#: nsdimagery: runs in the order of the betas (see the module docstring) and trials a run.
IMAGERY_RUNS = ("visA", "attA", "imgA_1", "visB", "attB", "imgB_1", "visC", "attC", "imgC_1", "imgA_2", "imgB_2",
                "imgC_2")
IMAGERY_TRIALS_PER_RUN = 48
#: Conditions by run-name prefix, and the ones decoded by default.
CONDITIONS = {"vis": "vision", "img": "imagery", "att": "attention"}
DECODED = ("vision", "imagery")
#: Stimulus sets with a target image (set C is conceptual: words, no image).
IMAGE_SETS = ("A", "B")


class NsdExperimentImporter(NsdImporter):
    """An NSD experiment whose one session of betas is a single file (subclass: the folder, the names, the trials)."""

    #: the experiment's name (session label, task, file names)
    experiment: ClassVar[str] = ""
    options = {
        "type": "beta folder (default: the experiment's <name>betas_fithrf_GLMdenoise_RR)",
        "grid": "func1pt8mm (default) or func1mm",
        "file": "nii or hdf5 (default: the .nii.gz where present, else .hdf5)",
    }

    @property
    def beta_type(self) -> str:
        return self.opts.get("type", f"{self.experiment}betas_fithrf_GLMdenoise_RR")

    @property
    def beta_names(self) -> dict[str, str]:
        """Accepted file names in the betas folder, by kind."""
        return {"nii": f"betas_{self.experiment}.nii.gz", "hdf5": f"betas_{self.experiment}.hdf5"}

    def beta_dir(self, subject: str) -> Path:
        return self.root / "nsddata_betas" / "ppdata" / f"subj{subject}" / self.grid / self.beta_type

    def subjects(self) -> list[str]:
        return [s for s in super().subjects() if self.beta_dir(s).is_dir()]

    def beta_file(self, subject: str) -> Path:
        """The betas file of ``subject`` (MissingInputError naming the folder and the names looked for)."""
        folder = self.beta_dir(subject)
        wanted = self.opts.get("file")
        if wanted not in (None, "nii", "hdf5"):
            raise UsageError(f"--betas {self.format}: file={wanted!r} must be nii or hdf5")
        kinds = [wanted] if wanted else ["nii", "hdf5"]
        for kind in kinds:
            path = folder / self.beta_names[kind]
            if path.is_file():
                return path
        names = " or ".join(self.beta_names[k] for k in kinds)
        raise MissingInputError(f"no {self.experiment} betas for sub-{subject}: {names} does not exist", folder)

    def design_file(self, relative: str) -> Path:
        """A file of the experiment's design under the root (MissingInputError naming it when absent)."""
        path = self.root / relative
        if not path.is_file():
            raise MissingInputError(f"{self.experiment}'s {path.name} does not exist (NSD publishes it at "
                                    f"{relative})", path)
        return path

    # -- what subclasses give -----------------------------------------------------------------------------------------

    def experiment_trials(self, subject: str) -> tuple[pd.DataFrame, list[Path]]:
        """Every beta's trial, in beta order, and the design files read.

        Returns
        -------
        trials : pandas.DataFrame
            ``run`` (label), ``stim_id``, ``stim_file``, ``decode`` (bool), then metadata columns.
        files : list of Path
        """
        raise NotImplementedError

    # -- the plan -----------------------------------------------------------------------------------------------------

    def plan(self, subject: str, sessions: list[str] | None = None) -> ImportPlan:
        path = self.beta_file(subject)
        wanted_sessions(sessions, {self.experiment: 1})
        mask_file = self.mask_option() or _existing(self.root / "nsddata" / "ppdata" / f"subj{subject}" / self.grid
                                                    / "brainmask.nii.gz")
        n_volumes, shape, affine, dtype = self._header(path, mask_file)
        trials, design_files = self.experiment_trials(subject)
        if len(trials) != n_volumes:
            names = ", ".join(p.name for p in design_files)
            raise BadDataError(f"{path.name} holds {n_volumes} betas but the design ({names}) lists {len(trials)}: "
                               "trials the betas lack, or the reverse", path)
        table = session_trials(subject, self.experiment, trials["run"].to_numpy(), list(trials["stim_id"]),
                               list(trials["stim_file"]), trials["decode"].to_numpy(bool))
        metadata = trials.drop(columns=["run", "stim_id", "stim_file", "decode"]).reset_index(drop=True)
        beta = BetaFile(path, n_volumes, "hdf5" if path.suffix == ".hdf5" else "nifti", "betas")
        session = ImportedSession(self.experiment, [beta], table, metadata)
        sample = next(self.read_file(None, beta, np.arange(int(np.prod(shape)), dtype=np.int64), None,
                                     4 * int(np.prod(shape))))
        scale, note = self.decide_scale(dtype, sample[:1], path)
        return ImportPlan(self.format, subject, self.path, [session], shape, affine, scale, note, self.units,
                          mask_file, design_files, self.space if self.grid == "func1pt8mm" else self.grid, self.task,
                          str(dtype))


@register
class NsdSyntheticImporter(NsdExperimentImporter):
    """NSD-synthetic's ``betas_nsdsynthetic`` (744 trials, 284 images) in ``func1pt8mm``."""

    format = "nsdsynthetic"
    experiment = "nsdsynthetic"
    task = "nsdsynthetic"
    summary = ("NSD-synthetic's single-trial betas (nsdsyntheticbetas_fithrf_GLMdenoise_RR/betas_nsdsynthetic, int16 "
               "/ 300 = % signal change, func1pt8mm), trials from nsdsynthetic_expdesign.mat")
    DESIGN = "nsddata/experiments/nsdsynthetic/nsdsynthetic_expdesign.mat"

    def experiment_trials(self, subject: str) -> tuple[pd.DataFrame, list[Path]]:
        from bids_recon.io import read_matlab

        design = self.design_file(self.DESIGN)
        found = read_matlab(design, ["masterordering", "stimpattern"])
        if "masterordering" not in found:
            raise BadDataError("no masterordering variable: not NSD-synthetic's experimental design", design)
        order = np.asarray(found["masterordering"]).ravel().astype(np.int64)
        if len(order) and (order.min() < 1 or order.max() > SYNTHETIC_IMAGES):
            raise BadDataError(f"masterordering holds {order.min()}..{order.max()}: NSD-synthetic's images are "
                               f"numbered 1..{SYNTHETIC_IMAGES}", design)
        pattern = found.get("stimpattern")
        if pattern is not None:
            pattern = np.asarray(pattern)
            runs = pattern_positions(pattern.reshape(-1, *pattern.shape[-2:]) > 0)[1]
            if len(runs) != len(order):
                raise BadDataError(f"stimpattern marks {len(runs)} trials but masterordering lists {len(order)}",
                                   design)
        elif len(order) == SYNTHETIC_RUNS * SYNTHETIC_TRIALS_PER_RUN:
            runs = np.repeat(np.arange(1, SYNTHETIC_RUNS + 1), SYNTHETIC_TRIALS_PER_RUN)
        else:
            runs = np.zeros(len(order), np.int64)
        same_run = np.r_[False, runs[1:] == runs[:-1]]
        oneback = np.r_[False, order[1:] == order[:-1]] & same_run
        ids = [synthetic_stim_id(int(n), subject) for n in order]
        trials = pd.DataFrame({
            "run": [f"{r:02d}" if r > 0 else "n/a" for r in runs], "stim_id": ids, "stim_file": ids,
            "decode": np.ones(len(order), bool), "image_number": order,
            "task": np.where(runs == 0, "n/a", np.where(runs % 2 == 1, "fixation", "oneback")),
            "oneback_repeat": oneback,
        })
        return trials, [design]


def synthetic_stim_id(number: int, subject: str) -> str:
    """The stimulus id of NSD-synthetic image ``number`` (1-based): ``"17"``, or ``"221_subj01"`` for the colour
    images each participant has their own of."""
    return str(number) if number <= SYNTHETIC_SHARED_IMAGES else f"{number}_subj{subject}"


@register
class NsdImageryImporter(NsdExperimentImporter):
    """NSD-Imagery's ``betas_nsdimagery`` (720 betas: 12 runs of 48 trials, two betas an attention trial)."""

    format = "nsdimagery"
    experiment = "nsdimagery"
    task = "nsdimagery"
    summary = ("NSD-Imagery's single-trial betas (nsdimagerybetas_fithrf_GLMdenoise_RR/betas_nsdimagery, int16 / 300, "
               "func1pt8mm), trials from nsddata/bdata/nsdimagery/nsdimagery_subjNN_<run>.tsv; vision and imagery "
               "trials of the image sets decoded")
    options = {**NsdExperimentImporter.options,
               "decode": "conditions decoded: vision, imagery or both (default vision,imagery; attention and set C "
                         "are never decoded)"}
    BDATA = "nsddata/bdata/nsdimagery"

    @property
    def decoded(self) -> tuple[str, ...]:
        values = tuple(v.strip() for v in self.opts.get("decode", ",".join(DECODED)).replace("+", ",").split(",")
                       if v.strip())
        bad = [v for v in values if v not in DECODED]
        if bad or not values:
            raise UsageError(f"--betas nsdimagery: decode={self.opts.get('decode')!r} must name vision and/or imagery "
                             "(comma separated)")
        return values

    def run_tables(self, subject: str) -> list[tuple[str, pd.DataFrame, Path]]:
        """``(run name, behavioural table, file)`` of the 12 runs in the betas' order."""
        out = []
        for name in IMAGERY_RUNS:
            path = self.design_file(f"{self.BDATA}/nsdimagery_subj{subject}_{name}.tsv")
            try:
                table = pd.read_csv(path, sep="\t")
            except Exception as exc:  # pandas raises several parser errors
                raise BadDataError(f"cannot read NSD-Imagery's trial table ({exc})", path) from exc
            if "CONDITION" not in table:
                raise BadDataError(f"no CONDITION column (have: {', '.join(map(str, table.columns))})", path)
            if len(table) != IMAGERY_TRIALS_PER_RUN:
                raise BadDataError(f"{len(table)} trials where NSD-Imagery's runs have {IMAGERY_TRIALS_PER_RUN}", path)
            if "TRIAL" in table:
                table = table.sort_values("TRIAL", kind="stable").reset_index(drop=True)
            out.append((name, table, path))
        if all("RUN" in t for _, t, _ in out):
            numbers = [int(pd.to_numeric(t["RUN"], errors="coerce").iloc[0]) for _, t, _ in out]
            if len(set(numbers)) == len(numbers):
                out = [item for _, item in sorted(zip(numbers, out, strict=True), key=lambda pair: pair[0])]
        return out

    def experiment_trials(self, subject: str) -> tuple[pd.DataFrame, list[Path]]:
        from bids_recon.features.resolvers.nsdexperiments import IMAGERY_SETS

        decoded = self.decoded
        rows = []
        files = []
        for number, (name, table, path) in enumerate(self.run_tables(subject), start=1):
            files.append(path)
            condition = CONDITIONS[name[:3]]
            stimulus_set = name[3]
            phases = ("cue", "detection") if condition == "attention" else ("",)
            for trial in table.itertuples(index=False):
                target = str(trial.CONDITION).strip()
                cue = str(getattr(trial, "CUE", "")).strip() if "CUE" in table else ""
                known = IMAGERY_SETS.get(target)
                if known is not None and known != stimulus_set:
                    raise BadDataError(f"target {target!r} belongs to set {known}, not to run {name}'s set "
                                       f"{stimulus_set}", path)
                for phase in phases:
                    decode = condition in decoded and stimulus_set in IMAGE_SETS and known is not None
                    stim = f"{condition}-{target}"
                    rows.append({"run": f"{number:02d}", "stim_id": stim, "stim_file": target, "decode": decode,
                                 "condition": condition, "phase": phase or condition, "cue": cue, "target": target,
                                 "stimulus_set": stimulus_set, "run_name": name})
        return pd.DataFrame(rows), files


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


__all__ = ["IMAGERY_RUNS", "NsdExperimentImporter", "NsdImageryImporter", "NsdSyntheticImporter",
           "synthetic_stim_id"]
