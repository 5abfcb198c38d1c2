"""The single-trial beta stage of a participant: brain mask, one GLM per session, runs combined and split.

Its outputs (``outputnode``): ``betas`` (z-scored single trials, ``.npy``), ``trials`` (the trial table),
``mask_file`` (the brain mask), ``out_files`` (the derivatives it wrote). Its ``__desc__`` is :func:`methods`.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_recon.bids.derivatives import bids_uri
from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.design.confounds import ConfoundChoice, choose_confounds, describe_confounds, parse_confounds
from bids_recon.design.split import describe_split
from bids_recon.design.trials import CONDITION_COLUMN
from bids_recon.glm.estimators import estimator_card
from bids_recon.glm.params import GlmParams
from bids_recon.interfaces.glm import CombineRuns, SessionBetas, SubjectMask
from bids_recon.naming import SubjectOutputs
from bids_recon.params import to_dict
from bids_recon.workflows.utils import as_extra, gather, pick, pick_extra, read_outputs, relative_to, sink

#: Per-session maps of the beta stage (stat label -> description); see SessionBetas.
SESSION_MAPS = {
    "hrfindex": "Index (0-based) of each voxel's HRF in the library (see the documentation's method page)",
    "rsquare": "Variance explained (fraction) by the single-trial model with the voxel's HRF",
    "onoffrsquare": "Variance explained (fraction) by one regressor for all trials",
    "fraction": "Norm of the ridge betas as a fraction of the least-squares betas' norm (1 = no regularisation)",
}
#: Per-participant maps computed from all sessions' betas (z-scored per session).
SUBJECT_MAPS = {
    "ncsnr": "Noise-ceiling SNR of single-trial betas (NSD's definition, from repeated stimuli)",
    "noiseceiling": "Noise ceiling (% explainable variance) of the test-stimulus averages",
}


def confounds_text(glm: GlmParams, inputs: SubjectInputs | None = None) -> str:
    """The confounds clause of the methods: what ``--confounds`` gave in the participant's runs' tables (without
    ``inputs``: the setting)."""
    setting = " ".join(glm.confounds) or "none"
    if not parse_confounds(glm.confounds):
        return f"no confounds (--confounds {setting})"
    if inputs is None or not inputs.runs:
        return f"the fMRIPrep confounds chosen by --confounds {setting}"
    choices = [choose_confounds(run.confounds, glm.confounds) for run in inputs.runs]
    return f"the fMRIPrep confounds (--confounds {setting}): {describe_confounds(choices, glm.confounds)}"


def methods(config: Config, n_runs: int, task: str, inputs: SubjectInputs | None = None) -> str:
    """The methods paragraph of the beta stage, from the settings it runs with (and the confounds that the
    participant's tables give, with ``inputs``)."""
    wf, glm = config.workflow, config.workflow.glm
    drift = (f"cosine drift regressors (high-pass {glm.high_pass_hz:g} Hz)" if glm.drift_model == "cosine" else
             "Legendre polynomial drift regressors (degree round(run minutes / 2))")
    nuisance = f"with a constant, {drift} and {confounds_text(glm, inputs)}."
    estimator = f"with {estimator_card(glm.estimator).methods(glm)}, "
    zscore = ("Betas were z-scored per voxel within each session; the noise ceiling (NCSNR, Allen et al. 2022) "
              "was computed from repeated stimuli." if glm.zscore_per_session else
              "Betas were kept in percent signal change (not z-scored); the noise ceiling (NCSNR, Allen et al. "
              "2022) was computed from repeated stimuli.")
    starts = sorted({run.start_time for run in inputs.runs}) if inputs is not None else []
    timing = (f" fMRIPrep had corrected slice timing, so each volume was modelled at its reference time "
              f"({'/'.join(f'{t:g}' for t in starts if t > 0)} s after the volume's start, the sidecars' StartTime)."
              if any(t > 0 for t in starts) else "")
    return (f"Single-trial responses were estimated session by session for the {n_runs} runs of task '{task}' "
            + estimator + nuisance + timing
            + f" The {wf.space} preprocessed BOLD was analysed in percent signal change within the intersection of "
            f"the runs' brain masks. {zscore} " + split_text(config))


def split_text(config: Config) -> str:
    """How the trials were split (the methods text and the trial table's sidecar)."""
    stimuli = config.workflow.stimuli
    if config.workflow.betas_only and not stimuli.test_split:
        return ("No training and test split was made (--betas-only); the presentations of each "
                + ("condition" if stimuli.column == CONDITION_COLUMN else "stimulus") + " were numbered as repeats.")
    return describe_split(stimuli.test_min_repeats, stimuli.test_split)


#: ``space-`` labels of a participant's own spaces (not templates): masks in them need a SpatialReference.
INDIVIDUAL_SPACES = ("T1w", "T2w", "func", "boldref", "anat", "orig", "scanner", "individual")


def grid_sidecar(config: Config, inputs: SubjectInputs | None = None) -> dict[str, str]:
    """What ``res-`` means, for files that carry it, and the reference image of an individual space (BIDS
    validator: SIDECAR_KEY_REQUIRED)."""
    wf = config.workflow
    out = {}
    if wf.resolution:
        out["Resolution"] = (f"res-{wf.resolution}: the grid of the fMRIPrep {wf.space} res-{wf.resolution} "
                             "preprocessed BOLD")
    if inputs is not None and wf.space in INDIVIDUAL_SPACES and inputs.runs:
        fmriprep_dir = Path(config.execution.derivatives["fmriprep"])
        out["SpatialReference"] = bids_uri("fmriprep", relative_to(inputs.runs[0].preproc_bold, fmriprep_dir))
    elif inputs is not None and inputs.imported is not None:  # imported betas: their own grid
        plan = inputs.imported
        out["SpatialReference"] = Path(plan.mask_file or plan.sessions[0].files[0].path).absolute().as_uri()
    return out


def init_betas_wf(config: Config, inputs: SubjectInputs, names: SubjectOutputs,
                  name: str = "betas_wf") -> pe.Workflow:
    """Build the beta stage of one participant (see the module docstring)."""
    ex, glm_cfg, stim_cfg = config.execution, config.workflow.glm, config.workflow.stimuli
    out_dir = Path(ex.output_dir)
    grid = grid_sidecar(config, inputs)
    wf = pe.Workflow(name=name)
    wf.__desc__ = methods(config, len(inputs.runs), inputs.task, inputs)
    outputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials", "mask_file", "out_files"]),
                         name="outputnode")

    mask_sources = [r.brain_mask or r.preproc_bold for r in inputs.runs]  # no mask: the BOLD's EPI mask
    mask = pe.Node(SubjectMask(mask_files=[str(p) for p in mask_sources]), name="subject_mask")
    ds_mask = sink(out_dir, names.sink("brain_mask"), "ds_brain_mask", {
        "Type": "Brain", "Sources": [str(p) for p in mask_sources],
        "Description": "Voxels inside the brain mask of every run", **grid})
    wf.connect(mask, "out_mask", ds_mask, "in_file")

    written = [(ds_mask, "out_file")]
    glms = []
    confounds = {run.key: choose_confounds(run.confounds, glm_cfg.confounds) for run in inputs.runs}
    common = {"Estimator": glm_cfg.estimator, "DriftModel": glm_cfg.drift_model, "ConfoundsSetting": glm_cfg.confounds,
              **({"HighPassHz": glm_cfg.high_pass_hz} if glm_cfg.drift_model == "cosine" else {}), **grid}
    run_sinks = []  # (sink, position of the run among all runs): their tables come from combine_runs
    for session in inputs.sessions:
        runs = [r for r in inputs.runs if r.session == session]
        key = f"ses{session}" if session else "session"
        glm = pe.Node(SessionBetas(
            bold_files=[str(r.preproc_bold) for r in runs], events_files=[str(r.events) for r in runs],
            confounds_files=[str(r.confounds) for r in runs], repetition_times=[r.repetition_time for r in runs],
            start_times=[r.start_time for r in runs],
            runs=[r.run for r in runs], tasks=[r.task for r in runs], subject=inputs.subject, session=session,
            params=to_dict(glm_cfg),
            stimuli=to_dict(stim_cfg.rows_only()), seed=ex.random_seed,
        ), name=f"betas_{key}", mem_gb=1.0 + 0.1 * len(runs))
        wf.connect(mask, "out_mask", glm, "mask_file")
        glms.append(glm)
        for position, run in enumerate(runs):
            ds_betas = sink(out_dir, names.sink("betas", ses=run.session, run=run.run, task=run.task),
                            f"ds_betas_{run.key.replace('-', '')}", {
                                "Description": "Single-trial betas, percent signal change, one volume per trial; "
                                               "rows of the .tsv beside it list the trials in volume order",
                                "Units": "percent signal change", "RepetitionTime": run.repetition_time, **common,
                                **confounds_sidecar(confounds[run.key]),
                                "Sources": run_sources(run)})
            wf.connect(glm, ("betas_images", pick, position), ds_betas, "in_file")
            run_sinks.append((ds_betas, len(run_sinks)))
            written.append((ds_betas, "out_file"))
        ds_design = sink(out_dir, names.sink("design", ses=runs[0].session, run=runs[0].run, task=runs[0].task),
                         f"ds_design_{key}", {
                             "Description": "Design matrix of the run's single-trial GLM: one row per volume, one "
                                            "column per regressor", "Sources": run_sources(runs[0])})
        wf.connect(glm, "design", ds_design, "in_file")
        written.append((ds_design, "out_file"))
        for stat, description in SESSION_MAPS.items():
            ds_map = sink(out_dir, names.sink("stat_map", ses=session, stat=stat), f"ds_{stat}_{key}",
                          {"Description": description, **common,
                           "Sources": [uri for r in runs for uri in run_sources(r)]})
            wf.connect([(glm, ds_map, [(("maps", pick, stat), "in_file"),
                                       (("info", as_extra, ".json"), "extra_files")])])
            written.append((ds_map, "out_file"))

    combine = pe.Node(CombineRuns(stimuli=to_dict(stim_cfg), zscore=glm_cfg.zscore_per_session, bids_dir=ex.bids_dir,
                                  split=not config.workflow.betas_only,
                                  need_training=not config.workflow.decoding.decoders_from,
                                  events_files=[str(r.events) for s in inputs.sessions for r in inputs.runs
                                                if r.session == s]),
                      name="combine_runs")
    run_betas = gather(wf, [(glm, "betas") for glm in glms], "merge_betas")
    run_trials = gather(wf, [(glm, "trials") for glm in glms], "merge_trials")
    wf.connect([(run_betas, combine, [("out", "betas")]), (run_trials, combine, [("out", "trials")]),
                (mask, combine, [("out_mask", "mask_file")])])
    for ds_betas, position in run_sinks:  # each statmap's .tsv: its trials with the real split and repeat
        wf.connect(combine, ("run_trials", pick_extra, position, ".tsv"), ds_betas, "extra_files")
    ds_trials = sink(out_dir, names.sink("trials"), "ds_trials", {
        "Description": "All trials of the participant in the row order of the decoders' inputs; 'repeat' counts "
                       "earlier presentations. " + split_text(config),
        "StimulusResolver": stim_cfg.resolver, "StimulusColumn": stim_cfg.column or "the resolver's own",
        "Sources": [str(r.events) for r in inputs.runs]})
    wf.connect(combine, "trials", ds_trials, "in_file")
    written.append((ds_trials, "out_file"))
    written += subject_map_sinks(wf, combine, out_dir, names, {"Estimator": glm_cfg.estimator, **grid,
                                                               "Sources": read_outputs(names, inputs)})
    connect_outputs(wf, combine, mask, gather(wf, written, "merge_outputs"), outputnode)
    return wf


def run_sources(run) -> list[str]:
    """The files a run's betas are made from (its preprocessed BOLD, confounds and events); the sink names them as
    BIDS URIs of the datasets that hold them (``bids:fmriprep:...``, ``bids:raw:...``)."""
    return [str(run.preproc_bold), str(run.confounds), str(run.events)]


def confounds_sidecar(choice: ConfoundChoice) -> dict:
    """A run's betas sidecar keys for its confounds: the columns regressed out, and the default groups its table
    lacked (skipped) with how components were picked."""
    out: dict = {"Confounds": list(choice.columns)}
    if choice.skipped:
        out["ConfoundsSkipped"] = {k: list(v) for k, v in choice.skipped.items()}
    if choice.notes:
        out["ConfoundsNotes"] = list(choice.notes)
    return out


def subject_map_sinks(wf: pe.Workflow, combine: pe.Node, out_dir: Path, names: SubjectOutputs,
                      sidecar: dict) -> list[tuple[pe.Node, str]]:
    """Sinks of the per-participant maps (:data:`SUBJECT_MAPS`) that ``combine`` computes."""
    written = []
    for stat, description in SUBJECT_MAPS.items():
        ds_map = sink(out_dir, names.sink("stat_map", stat=stat), f"ds_{stat}", {"Description": description,
                                                                                 **sidecar})
        wf.connect(combine, ("maps", pick, stat), ds_map, "in_file")
        written.append((ds_map, "out_file"))
    return written


def connect_outputs(wf: pe.Workflow, combine: pe.Node, mask: pe.Node, out_files: pe.Node,
                    outputnode: pe.Node) -> None:
    """The beta stage's ``outputnode``: betas and trials from ``combine``, the mask, the derivatives written."""
    wf.connect([(combine, outputnode, [("betas", "betas"), ("trials", "trials")]),
                (mask, outputnode, [("out_mask", "mask_file")]),
                (out_files, outputnode, [("out", "out_files")])])
