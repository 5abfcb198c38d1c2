"""The participant workflow: betas -> ROIs -> the generator's part (features, decoders, images, metrics) -> report.

Workflows only wire interfaces; output names come from :mod:`bids_recon.bids.derivatives`; the generator's part
comes from its builder in :mod:`bids_recon.workflows.generators`, what it is from its card
(:mod:`bids_recon.generate.card`). Each part carries its own methods paragraph
(``__desc__``), built from the settings it runs with; the report and ``CITATION.md`` use them.
"""

from __future__ import annotations

from pathlib import Path

from nipype.pipeline import engine as pe

from bids_recon import __version__
from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.generate.card import generator_card
from bids_recon.interfaces.outputs import ParticipantReport
from bids_recon.naming import SubjectOutputs
from bids_recon.params import to_dict
from bids_recon.workflows import betas, encoding, imported, rois
from bids_recon.workflows.generators import generator_methods, init_generator_wf
from bids_recon.workflows.utils import gather


def subject_outputs(config: Config, inputs: SubjectInputs) -> SubjectOutputs:
    """The names of a participant's outputs under this configuration."""
    return SubjectOutputs(inputs.subject, inputs.task, config.workflow.space, config.workflow.resolution)


def introduction(config: Config) -> str:
    """The first sentence of the methods text."""
    if config.workflow.betas_only:
        return f"Single-trial betas were estimated with bids_recon {__version__} (--betas-only)."
    return f"Images were reconstructed with bids_recon {__version__}."


def participant_methods(config: Config, inputs: SubjectInputs) -> list[str]:
    """The methods paragraphs of a participant's workflow, in order (each part's ``__desc__``)."""
    card = generator_card(config.workflow.generate.generator)
    beta_stage = (imported.methods(config, inputs) if inputs.imported is not None else
                  betas.methods(config, len(inputs.runs), inputs.task, inputs))
    if config.workflow.betas_only:
        return [introduction(config), beta_stage]
    return [introduction(config), beta_stage, rois.methods(config), generator_methods(card, config)] + (
        [encoding.methods(config)] if card.encoding_enabled(config) else [])


def _cuda_impossible() -> bool:
    """True on Linux without NVIDIA device nodes or driver: no CUDA GPU, known without importing torch (~3 s)."""
    import glob
    import sys

    return (sys.platform.startswith("linux") and not glob.glob("/dev/nvidia[0-9]*")
            and not Path("/proc/driver/nvidia").exists())


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is a usage error."""
    if device == "cpu" or (device == "auto" and _cuda_impossible()):
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
    runs = (f"imported betas ({inputs.imported.format})" if inputs.imported is not None else
            str(len(inputs.runs)))
    summary = {"Participant": inputs.subject, "Task": inputs.task,
               "Sessions": ", ".join(s or "n/a" for s in inputs.sessions), "Runs": runs,
               "Space": config.workflow.space,
               "Generator": "none (--betas-only)" if config.workflow.betas_only else config.workflow.generate.generator}
    if config.workflow.decoding.decoders_from and not config.workflow.betas_only:  # --decoders-from DIR
        from bids_recon.decoding.reuse import summarise_source

        summary["Decoders"] = summarise_source(config.workflow.decoding.decoders_from, inputs.subject).text()
    return {**summary, "bids_recon": __version__}


def _report_inputs(config: Config, inputs: SubjectInputs) -> dict:
    """What the participant report is built from (the same for the workflow and ``--reports-only``)."""
    wf_cfg = config.workflow
    card = generator_card(wf_cfg.generate.generator)
    only = wf_cfg.betas_only
    return dict(
        output_dir=config.execution.output_dir, bids_dir=config.execution.bids_dir,
        stimuli=to_dict(wf_cfg.stimuli),
        first_run=(inputs.runs[0].session, inputs.runs[0].run, inputs.runs[0].task) if inputs.runs else
        (None, None, None),
        boldref=str(inputs.runs[0].boldref) if inputs.runs and inputs.runs[0].boldref else None,
        rois={} if only else {r: wf_cfg.rois.atlas_of(r) for r in wf_cfg.rois.names},
        decoders=[] if only else card.decoders(config), generator="" if only else card.name,
        summary=report_summary(config, inputs), methods=" ".join(participant_methods(config, inputs)),
        zscored=wf_cfg.glm.zscore_per_session, decoders_from="" if only else wf_cfg.decoding.decoders_from,
    )


def init_participant_wf(config: Config, inputs: SubjectInputs, name: str | None = None) -> pe.Workflow:
    """Build the workflow of one participant.

    Parameters
    ----------
    config : Config
        The run's configuration.
    inputs : SubjectInputs
        The participant's runs (from :func:`bids_recon.bids.layout.collect_inputs`).
    """
    names = subject_outputs(config, inputs)
    card = generator_card(config.workflow.generate.generator)
    wf = pe.Workflow(name=name or f"sub_{inputs.subject}_wf")
    wf.__desc__ = introduction(config)
    beta_stage = imported.init_import_wf if inputs.imported is not None else betas.init_betas_wf
    betas_wf = beta_stage(config, inputs, names)
    if config.workflow.betas_only:  # --betas-only: the betas, their maps and the report's beta section
        report = pe.Node(ParticipantReport(names=vars(names), **_report_inputs(config, inputs)), name="report")
        wf.connect(betas_wf, "outputnode.out_files", report, "waits_for")
        return wf
    rois_wf = rois.init_rois_wf(config, names, inputs=inputs)
    generator_wf = init_generator_wf(config, inputs, names, resolve_device(config.execution.device))
    wf.connect([
        (betas_wf, rois_wf, [("outputnode.mask_file", "inputnode.mask_file")]),
        (betas_wf, generator_wf, [("outputnode.betas", "inputnode.betas"), ("outputnode.trials", "inputnode.trials"),
                                  ("outputnode.mask_file", "inputnode.mask_file")]),
        (rois_wf, generator_wf, [("outputnode.roi_files", "inputnode.roi_files")]),
    ])
    if config.workflow.rois.voxel_selection:  # voxels rated by the betas' reliability
        wf.connect([(betas_wf, rois_wf, [("outputnode.betas", "inputnode.betas"),
                                         ("outputnode.trials", "inputnode.trials")])])
    parts = [betas_wf, rois_wf, generator_wf]
    if card.encoding_enabled(config):
        encoding_wf = encoding.init_encoding_wf(config, inputs, names, resolve_device(config.execution.device))
        wf.connect([
            (betas_wf, encoding_wf, [("outputnode.betas", "inputnode.betas"), ("outputnode.trials", "inputnode.trials"),
                                     ("outputnode.mask_file", "inputnode.mask_file")]),
            (rois_wf, encoding_wf, [("outputnode.roi_files", "inputnode.roi_files")]),
            (generator_wf, encoding_wf, [("outputnode.features", "inputnode.features")]),
        ])
        parts.append(encoding_wf)
    report = pe.Node(ParticipantReport(names=vars(names), **_report_inputs(config, inputs)), name="report")
    written = gather(wf, [(part, "outputnode.out_files") for part in parts], "merge_outputs")
    wf.connect(written, "out", report, "waits_for")
    return wf


def rebuild_report(config: Config, inputs: SubjectInputs) -> Path:
    """Rebuild a participant's report from the outputs already written (``--reports-only``)."""
    from bids_recon.bids.derivatives import refuse_incomplete
    from bids_recon.errors import MissingInputError
    from bids_recon.reports.participant import build_participant_report

    names = subject_outputs(config, inputs)
    out_dir = Path(config.execution.output_dir)
    refuse_incomplete(out_dir, [inputs.subject], "--reports-only")
    metrics = out_dir / (names.trials() if config.workflow.betas_only else
                         names.metrics(config.workflow.generate.generator))
    if not metrics.is_file():
        raise MissingInputError(f"no outputs of sub-{inputs.subject} to report on: run without --reports-only first",
                                metrics)
    args = _report_inputs(config, inputs)
    return build_participant_report(
        names=names, **{**args, "output_dir": out_dir, "bids_dir": Path(args["bids_dir"]),
                        "boldref": Path(args["boldref"]) if args["boldref"] else None,
                        "decoders_from": Path(args["decoders_from"]) if args["decoders_from"] else None})
