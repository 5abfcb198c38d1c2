"""The participant workflow: betas -> ROIs -> features -> decoders -> reconstructions -> metrics -> report.

Workflows only wire interfaces; output names come from :mod:`bids_recon.bids.derivatives`.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.utility import Merge
from nipype.pipeline import engine as pe

from bids_recon import __version__
from bids_recon.bids.derivatives import SubjectOutputs, bids_uri
from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.glm.trials import describe_split
from bids_recon.interfaces.glm import CombineRuns, SessionBetas, SubjectMask
from bids_recon.interfaces.outputs import DerivativesSink, ParticipantReport, WriteReconstructions
from bids_recon.interfaces.stages import Decode, Evaluate, ImageFeatures, Reconstruct, Rois


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


#: Per-session maps of the beta stage (stat label -> description); see SessionBetas.
SESSION_MAPS = {
    "hrfindex": "Index (0-based) of each voxel's HRF in the library (see the documentation's method page)",
    "rsquare": "Variance explained (fraction) by the single-trial model with the voxel's HRF",
    "onoffrsquare": "Variance explained (fraction) by one regressor for all trials",
    "fraction": "Fractional-ridge fraction of the OLS norm (1 = no regularisation)",
}
#: Per-participant maps computed from all sessions' betas (z-scored per session).
SUBJECT_MAPS = {
    "ncsnr": "Noise-ceiling SNR of single-trial betas (NSD's definition, from repeated stimuli)",
    "noiseceiling": "Noise ceiling (% explainable variance) of the test-stimulus averages",
}


_NUISANCE = "with cosine drift regressors (high-pass {high_pass} Hz) and the fMRIPrep confounds {confounds}."
#: Methods sentence of each single-trial estimator.
GLM_METHODS = {
    "lsa": "with a least-squares-all GLM: one regressor per trial convolved with a canonical (Glover) HRF, "
           + _NUISANCE,
    "lss": "with least-squares-separate GLMs (Mumford et al. 2012): for each trial, its regressor and one for all "
           "other trials, canonical (Glover) HRF, " + _NUISANCE,
    "fithrf": "with a least-squares-all GLM whose HRF was chosen per voxel from a library of 20 double-gamma HRFs "
              "(time to peak 3.5-8 s) by variance explained, " + _NUISANCE,
    "fithrf-denoise": "with a GLMsingle-style estimator (Prince et al. 2022): HRF chosen per voxel from a library of "
                      "20 double-gamma HRFs, plus up to {n_pcs} noise regressors (principal components of a noise "
                      "pool) whose number was chosen by leave-one-run-out cross-validation of repeated trials, "
                      + _NUISANCE,
    "fithrf-denoise-rr": "with a GLMsingle-style estimator (Prince et al. 2022): HRF chosen per voxel from a library "
                         "of 20 double-gamma HRFs, up to {n_pcs} noise regressors (principal components of a noise "
                         "pool) chosen by leave-one-run-out cross-validation of repeated trials, and fractional ridge "
                         "regression (Rokem & Kay 2020; fraction chosen per {selection} by the same cross-validation, "
                         "betas rescaled to the least-squares scale), " + _NUISANCE,
}


def methods_text(config: Config, inputs: SubjectInputs) -> str:
    """The methods paragraph of what this workflow runs (it goes into the report)."""
    wf, glm, dec = config.workflow, config.workflow.glm, config.workflow.decoding
    rois = "; ".join(f"{name}: {', '.join(labels)}" for name, labels in wf.rois.labels.items()
                     if name not in wf.rois.user_masks)
    user = ", ".join(f"{k} ({v})" for k, v in wf.rois.user_masks.items())
    return (
        f"Images were reconstructed with bids_recon {__version__}. Single-trial responses were estimated "
        f"session by session for the {len(inputs.runs)} runs of task '{inputs.task}' "
        + GLM_METHODS[glm.estimator].format(high_pass=glm.high_pass_hz, confounds=", ".join(glm.confounds),
                                             n_pcs=glm.max_noise_components, selection=glm.fraction_selection)
        + f" The {wf.space} preprocessed BOLD was analysed in percent signal change within the intersection of the "
        f"runs' brain masks. Betas were z-scored per voxel within each session; the noise ceiling (NCSNR, "
        f"Allen et al. 2022) was computed from repeated stimuli. "
        + describe_split(wf.stimuli.test_min_repeats, wf.stimuli.test_split) + " "
        f"Regions of interest came from the TemplateFlow {wf.rois.atlas} atlas ({wf.rois.atlas_desc}) resampled to "
        f"the BOLD grid ({rois})" + (f" and from user masks {user}" if user else "") + ". "
        + (_diffusion_methods(config) if wf.generate.generator == "diffusion" else
        f"The decoding target was a {dec.n_components}-component PCA basis of the training images' pixels "
        f"({wf.stimuli.image_size} px). A ridge decoder (himalaya; inputs standardised; alpha per target chosen "
        f"among {len(dec.alphas)} values by {dec.cv_folds}-fold contiguous cross-validation) mapped "
        f"{dec.roi} betas of single training trials to the targets, and decoded repeat-averaged test betas. "
        f"Images were generated with the {wf.generate.generator} generator.")
        + " Images were evaluated with PixCorr and SSIM "
        "(425 px) and 2-way identification over all pairs (chance 50%) in pixel and feature space."
    )


def _diffusion_methods(config: Config) -> str:
    from bids_recon.workflows.diffusion import methods_text as diffusion_methods

    return diffusion_methods(config).lstrip()


def _decoders(config: Config) -> list[tuple[str, str]]:
    """``(roi, target)`` of the decoders the configured generator uses (shown in the report)."""
    if config.workflow.generate.generator == "diffusion":
        from bids_recon.workflows.diffusion import report_decoders

        return report_decoders(config)
    return [(config.workflow.decoding.roi, config.workflow.decoding.target)]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is a usage error."""
    if device == "cpu":
        return "cpu"
    try:
        import torch

        available = torch.cuda.is_available()
    except ImportError:
        available = False
    if device == "cuda" and not available:
        from bids_recon.errors import UsageError

        raise UsageError("--device cuda was asked for but torch sees no CUDA GPU (use --device cpu or auto)")
    return "cuda" if available else "cpu"


def report_summary(config: Config, inputs: SubjectInputs) -> dict[str, str]:
    """Facts shown at the top of the participant report."""
    return {"Participant": inputs.subject, "Task": inputs.task,
            "Sessions": ", ".join(s or "n/a" for s in inputs.sessions), "Runs": str(len(inputs.runs)),
            "Space": config.workflow.space, "Generator": config.workflow.generate.generator,
            "bids_recon": __version__}


def init_participant_wf(config: Config, inputs: SubjectInputs, name: str | None = None) -> pe.Workflow:
    """Build the workflow of one participant.

    Parameters
    ----------
    config : Config
        The run's configuration.
    inputs : SubjectInputs
        The participant's runs (from :func:`bids_recon.bids.layout.collect_inputs`).
    """
    ex, wf_cfg = config.execution, config.workflow
    glm_cfg, roi_cfg, dec_cfg, stim_cfg = wf_cfg.glm, wf_cfg.rois, wf_cfg.decoding, wf_cfg.stimuli
    bids_dir, out_dir = Path(ex.bids_dir), Path(ex.output_dir)
    fmriprep_dir = Path(ex.derivatives["fmriprep"])
    names = SubjectOutputs(inputs.subject, inputs.task, wf_cfg.space, wf_cfg.resolution)
    device = resolve_device(ex.device)
    generator = wf_cfg.generate.generator

    # Files with a res- entity must say what it means (BIDS validator: SIDECAR_KEY_REQUIRED)
    grid = {"Resolution": f"res-{wf_cfg.resolution}: the grid of the fMRIPrep {wf_cfg.space} res-{wf_cfg.resolution} "
                          "preprocessed BOLD"} if wf_cfg.resolution else {}
    wf = pe.Workflow(name=name or f"sub_{inputs.subject}_wf")
    wf.__desc__ = methods_text(config, inputs)

    mask = pe.Node(SubjectMask(mask_files=[str(r.brain_mask) for r in inputs.runs]), name="subject_mask")
    ds_mask = pe.Node(DerivativesSink(
        out_file=str(out_dir / names.brain_mask()),
        sidecar={"Type": "Brain", "Sources": [bids_uri("fmriprep", _rel(r.brain_mask, fmriprep_dir))
                                              for r in inputs.runs],
                 "Description": "Voxels inside the brain mask of every run", **grid},
    ), name="ds_brain_mask")
    wf.connect(mask, "out_mask", ds_mask, "in_file")

    map_sinks = []  # the report waits for them
    merge_betas = pe.Node(Merge(len(inputs.sessions)), name="merge_betas")
    merge_trials = pe.Node(Merge(len(inputs.sessions)), name="merge_trials")
    for index, session in enumerate(inputs.sessions, start=1):
        runs = [r for r in inputs.runs if r.session == session]
        key = f"ses{session}" if session else "session"
        glm = pe.Node(SessionBetas(
            bold_files=[str(r.preproc_bold) for r in runs], events_files=[str(r.events) for r in runs],
            confounds_files=[str(r.confounds) for r in runs], repetition_times=[r.repetition_time for r in runs],
            runs=[r.run for r in runs], subject=inputs.subject, session=session, estimator=glm_cfg.estimator,
            confound_columns=list(glm_cfg.confounds), stimulus_column=stim_cfg.column,
            high_pass_hz=glm_cfg.high_pass_hz, max_noise_components=glm_cfg.max_noise_components,
            fraction_selection=glm_cfg.fraction_selection, seed=ex.random_seed,
        ), name=f"betas_{key}", mem_gb=1.0 + 0.1 * len(runs))
        wf.connect([(mask, glm, [("out_mask", "mask_file")]),
                    (glm, merge_betas, [("betas", f"in{index}")]),
                    (glm, merge_trials, [("trials", f"in{index}")])])
        common = {"Estimator": glm_cfg.estimator, "HighPassHz": glm_cfg.high_pass_hz, "Confounds": glm_cfg.confounds,
                  **grid}
        for position, run in enumerate(runs):
            sidecar = {
                "Description": "Single-trial betas, percent signal change, one volume per trial; rows of the .tsv "
                               "beside it list the trials in volume order",
                "Units": "percent signal change", "RepetitionTime": run.repetition_time, **common,
                "Sources": [bids_uri("fmriprep", _rel(run.preproc_bold, fmriprep_dir)),
                            bids_uri("fmriprep", _rel(run.confounds, fmriprep_dir)),
                            bids_uri("raw", _rel(run.events, bids_dir))],
            }
            ds_betas = pe.Node(DerivativesSink(out_file=str(out_dir / names.betas(run.session, run.run)),
                                               sidecar=sidecar), name=f"ds_betas_{run.key.replace('-', '')}")
            wf.connect(glm, ("betas_images", _pick, position), ds_betas, "in_file")
            wf.connect(glm, ("trials", _pick_tsv, position), ds_betas, "extra_files")
        ds_design = pe.Node(DerivativesSink(out_file=str(out_dir / names.design(runs[0].session, runs[0].run))),
                            name=f"ds_design_{key}")
        wf.connect(glm, "design", ds_design, "in_file")
        for stat, description in SESSION_MAPS.items():
            ds_map = pe.Node(DerivativesSink(out_file=str(out_dir / names.stat_map(session, stat)),
                                             sidecar={"Description": description, **common}),
                             name=f"ds_{stat}_{key}")
            wf.connect(glm, ("maps", _pick, stat), ds_map, "in_file")
            wf.connect(glm, ("info", _json_of), ds_map, "extra_files")
            map_sinks.append(ds_map)

    combine = pe.Node(CombineRuns(test_min_repeats=stim_cfg.test_min_repeats, test_split=stim_cfg.test_split,
                                  stimulus_column=stim_cfg.column, zscore=glm_cfg.zscore_per_session,
                                  events_files=[str(r.events) for s in inputs.sessions for r in inputs.runs
                                                if r.session == s]),
                      name="combine_runs")
    ds_trials = pe.Node(DerivativesSink(
        out_file=str(out_dir / names.trials()),
        sidecar={"Description": "All trials of the participant in the row order of the decoders' inputs; 'repeat' "
                                "counts earlier presentations. "
                                + describe_split(stim_cfg.test_min_repeats, stim_cfg.test_split),
                 "StimulusColumn": stim_cfg.column},
    ), name="ds_trials")
    wf.connect(combine, "trials", ds_trials, "in_file")
    rois = pe.Node(Rois(
        labels={k: v for k, v in roi_cfg.labels.items()}, user_masks=dict(roi_cfg.user_masks),
        template=roi_cfg.template, resolution=roi_cfg.resolution, atlas=roi_cfg.atlas, atlas_desc=roi_cfg.atlas_desc,
        label_table_template=roi_cfg.label_table_template, min_voxels=roi_cfg.min_voxels,
    ), name="rois")
    features = pe.Node(ImageFeatures(
        bids_dir=str(bids_dir), stimuli_folder=stim_cfg.folder, image_size=stim_cfg.image_size,
        n_components=dec_cfg.n_components, seed=ex.random_seed,
    ), name="image_features")
    decode = pe.Node(Decode(
        roi=dec_cfg.roi, target=dec_cfg.target, alphas=[float(a) for a in dec_cfg.alphas], cv_folds=dec_cfg.cv_folds,
        device=device,
    ), name="decode", mem_gb=2.0)
    recon = pe.Node(Reconstruct(generator=generator), name="reconstruct")
    evaluate = pe.Node(Evaluate(bids_dir=str(bids_dir), stimuli_folder=stim_cfg.folder, generator=generator),
                       name="evaluate")
    for stat, description in SUBJECT_MAPS.items():
        ds_map = pe.Node(DerivativesSink(out_file=str(out_dir / names.stat_map(None, stat)),
                                         sidecar={"Description": description, "Estimator": glm_cfg.estimator, **grid}),
                         name=f"ds_{stat}")
        wf.connect(combine, ("maps", _pick, stat), ds_map, "in_file")
        map_sinks.append(ds_map)
    merge_maps = pe.Node(Merge(len(map_sinks)), name="merge_maps")
    for index, sink in enumerate(map_sinks, start=1):
        wf.connect(sink, "out_file", merge_maps, f"in{index}")
    wf.connect([
        (merge_betas, combine, [(("out", _flatten), "betas")]),
        (merge_trials, combine, [(("out", _flatten), "trials")]),
        (mask, combine, [("out_mask", "mask_file")]),
        (mask, rois, [("out_mask", "mask_file")]),
    ])
    linear = [  # connected below unless the diffusion branch replaces these nodes
        (combine, features, [("trials", "trials")]),
        (combine, decode, [("betas", "betas"), ("trials", "trials")]),
        (mask, decode, [("out_mask", "mask_file")]),
        (rois, decode, [("roi_files", "roi_files")]),
        (features, decode, [("features", "features")]),
        (decode, recon, [("decoded", "decoded")]),
        (features, recon, [("basis", "basis")]),
        (recon, evaluate, [("reconstructions", "reconstructions")]),
        (decode, evaluate, [("decoded", "decoded")]),
    ]

    # Outputs
    roi_names = list(roi_cfg.labels) + [k for k in roi_cfg.user_masks if k not in roi_cfg.labels]
    merge_outputs = pe.Node(Merge(len(roi_names) + 6), name="merge_outputs")
    for index, roi in enumerate(roi_names, start=1):
        atlas = None if roi in roi_cfg.user_masks else roi_cfg.atlas
        ds_roi = pe.Node(DerivativesSink(
            out_file=str(out_dir / names.roi_mask(roi, atlas)),
            sidecar={"Type": "ROI", "Atlas": atlas, "AtlasLabels": roi_cfg.labels.get(roi, []),
                     "Template": roi_cfg.template, "Resampling": "nearest neighbour to the BOLD grid", **grid,
                     "Sources": [roi_cfg.user_masks[roi]] if roi in roi_cfg.user_masks else
                     [f"templateflow:tpl-{roi_cfg.template}_res-{roi_cfg.resolution:02d}_atlas-{roi_cfg.atlas}"
                      f"_desc-{roi_cfg.atlas_desc}_dseg.nii.gz"]},
        ), name=f"ds_roi_{roi}")
        wf.connect([(rois, ds_roi, [(("roi_files", _pick, roi), "in_file"),
                                    (("roi_sidecars", _pick_json, roi), "extra_files")]),
                    (ds_roi, merge_outputs, [("out_file", f"in{index}")])])

    decoder_sidecar = {"Target": dec_cfg.target, "ROI": dec_cfg.roi, "TargetDescription":
                       f"{dec_cfg.n_components}-component PCA of training-image pixels at {stim_cfg.image_size} px",
                       "Sources": [bids_uri("bids_recon", names.betas(r.session, r.run).as_posix())
                                   for r in inputs.runs]}
    ds_decoder = pe.Node(DerivativesSink(out_file=str(out_dir / names.decoder(dec_cfg.roi, dec_cfg.target)),
                                         sidecar=decoder_sidecar), name="ds_decoder")
    ds_decoded = pe.Node(DerivativesSink(
        out_file=str(out_dir / names.features(dec_cfg.roi, dec_cfg.target)),
        sidecar={"Description": "Decoded ('decoded') and true ('true') features of the test stimuli "
                                "('stim_ids'), from betas averaged over 'n_trials' presentations",
                 "Target": dec_cfg.target, "ROI": dec_cfg.roi},
    ), name="ds_decoded")
    write_recon = pe.Node(WriteReconstructions(
        index_file=str(out_dir / names.recon_index(generator)), output_dir=str(out_dir),
        sidecar={"Generator": generator, "Description": "Reconstructions of the test stimuli from repeat-averaged "
                 "betas; 'trials' is the number of presentations averaged"},
    ), name="ds_reconstructions")
    ds_metrics = pe.Node(DerivativesSink(
        out_file=str(out_dir / names.metrics(generator)),
        sidecar={"Description": "Reconstruction metrics; chance of a similarity metric = its mean over "
                                "mismatched pairs; identification chance = 0.5",
                 "Generator": generator},
    ), name="ds_metrics")
    linear += [
        (decode, ds_decoder, [("decoder", "in_file"), (("decoder", _json_extra), "extra_files")]),
        (decode, ds_decoded, [("decoded", "in_file")]),
        (evaluate, write_recon, [("per_item", "per_item")]),
        (recon, write_recon, [("reconstructions", "reconstructions"),
                              (("reconstructions", _recon_paths, str(out_dir), names, generator), "image_files")]),
        (evaluate, ds_metrics, [("metrics", "in_file")]),
        (ds_decoder, merge_outputs, [("out_file", f"in{len(roi_names) + 1}")]),
        (ds_decoded, merge_outputs, [("out_file", f"in{len(roi_names) + 2}")]),
        (write_recon, merge_outputs, [("index_file", f"in{len(roi_names) + 3}")]),
        (ds_metrics, merge_outputs, [("out_file", f"in{len(roi_names) + 4}")]),
    ]
    if generator == "diffusion":
        from bids_recon.workflows.diffusion import init_diffusion_wf

        diffusion_wf = init_diffusion_wf(config, inputs, names, device)
        wf.connect([
            (combine, diffusion_wf, [("betas", "inputnode.betas"), ("trials", "inputnode.trials")]),
            (mask, diffusion_wf, [("out_mask", "inputnode.mask_file")]),
            (rois, diffusion_wf, [("roi_files", "inputnode.roi_files")]),
            (diffusion_wf, merge_outputs, [("outputnode.out_files", f"in{len(roi_names) + 1}")]),
        ])
    else:
        wf.connect(linear)
    wf.connect([
        (ds_mask, merge_outputs, [("out_file", f"in{len(roi_names) + 5}")]),
        (ds_trials, merge_outputs, [("out_file", f"in{len(roi_names) + 6}")]),
    ])

    report = pe.Node(ParticipantReport(
        output_dir=str(out_dir), subject=inputs.subject, task=inputs.task, space=wf_cfg.space,
        resolution=wf_cfg.resolution, bids_dir=str(bids_dir), stimuli_folder=stim_cfg.folder,
        first_run=(inputs.runs[0].session, inputs.runs[0].run),
        boldref=str(inputs.runs[0].boldref) if inputs.runs[0].boldref else None,
        rois={r: (None if r in roi_cfg.user_masks else roi_cfg.atlas) for r in roi_names},
        decoders=_decoders(config), generator=generator, methods=wf.__desc__,
        summary=report_summary(config, inputs),
    ), name="report")
    wf.connect(merge_outputs, "out", report, "waits_for")
    wf.connect(merge_maps, "out", report, "waits_for_maps")
    return wf


def _pick(mapping: dict, key: str):
    return mapping[key]


def _pick_json(mapping: dict, key: str) -> dict:
    return {".json": mapping[key]}


def _pick_tsv(paths: list, index: int) -> dict:
    return {".tsv": paths[index]}


def _json_of(path: str) -> dict:
    return {".json": path}


def _flatten(lists: list) -> list:
    return [item for sub in lists for item in (sub if isinstance(sub, list) else [sub])]


def _tsv_extra(path: str) -> dict[str, str]:
    return {".tsv": path}


def _json_extra(path: str) -> dict[str, str]:
    return {".json": path[: -len(".npz")] + ".json"}


def _recon_paths(reconstructions: str, output_dir: str, names, generator: str) -> dict[str, str]:
    import numpy as np

    with np.load(reconstructions) as data:
        stim_ids = [str(s) for s in data["stim_ids"]]
    from pathlib import Path

    return {s: str(Path(output_dir) / names.recon_image(s, generator)) for s in stim_ids}


def rebuild_report(config: Config, inputs: SubjectInputs) -> Path:
    """Rebuild a participant's report from the outputs already written (``--reports-only``)."""
    from bids_recon.errors import MissingInputError
    from bids_recon.reports.participant import build_participant_report

    wf_cfg, out_dir = config.workflow, Path(config.execution.output_dir)
    names = SubjectOutputs(inputs.subject, inputs.task, wf_cfg.space, wf_cfg.resolution)
    if not (out_dir / names.metrics(wf_cfg.generate.generator)).is_file():
        raise MissingInputError(f"no outputs of sub-{inputs.subject} to report on: run without --reports-only first",
                                out_dir / names.metrics(wf_cfg.generate.generator))
    roi_cfg = wf_cfg.rois
    roi_names = list(roi_cfg.labels) + [k for k in roi_cfg.user_masks if k not in roi_cfg.labels]
    return build_participant_report(
        output_dir=out_dir, names=names, bids_dir=Path(config.execution.bids_dir),
        stimuli_folder=wf_cfg.stimuli.folder, first_run=(inputs.runs[0].session, inputs.runs[0].run),
        boldref=inputs.runs[0].boldref,
        rois={r: (None if r in roi_cfg.user_masks else roi_cfg.atlas) for r in roi_names},
        decoders=_decoders(config), generator=wf_cfg.generate.generator,
        summary=report_summary(config, inputs), methods=methods_text(config, inputs),
    )
