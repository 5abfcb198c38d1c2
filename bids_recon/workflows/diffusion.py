"""The latent-diffusion branch of the participant workflow (``--generator diffusion``).

stimulus z/c features (cached) -> ridge decoders (early visual -> z, higher visual -> c) -> z only, c only and
z+c reconstructions -> metrics per variant -> derivatives. Workflows only wire interfaces; output names come from
:mod:`bids_recon.bids.derivatives`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_recon.bids.derivatives import SubjectOutputs, bids_uri
from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.generate.models import ResolvedModel, resolve_model
from bids_recon.interfaces.diffusion import (
    DiffusionReconstruct,
    EvaluateVariants,
    StimulusLatents,
    WriteDiffusionReconstructions,
)
from bids_recon.interfaces.outputs import DerivativesSink
from bids_recon.interfaces.stages import Decode

#: Number of files the branch's ``outputnode.out_files`` lists (decoders, decoded features, index, metrics).
N_OUTPUTS = 6


def feature_cache_dir(config: Config) -> Path:
    """The feature cache folder: ``--feature-cache`` or ``<work_dir>/feature_cache``."""
    diff = config.workflow.generate.diffusion
    return Path(diff.feature_cache) if diff.feature_cache else Path(config.execution.work_dir) / "feature_cache"


def captions_file(config: Config) -> Path:
    """The captions table: ``--captions`` (absolute) or ``[workflow.stimuli] captions`` relative to bids_dir."""
    path = Path(config.workflow.stimuli.captions)
    return path if path.is_absolute() else Path(config.execution.bids_dir) / path


@functools.cache
def _resolve(spec: str, model_dir: str, allow_download: bool, hash_cache: str) -> ResolvedModel:
    return resolve_model(spec, model_dir or None, allow_download, Path(hash_cache))


def configured_model(config: Config) -> ResolvedModel:
    """Resolve ``--model`` once per process (raises ``MissingInputError``, exit 66, when it is not available)."""
    diff = config.workflow.generate.diffusion
    return _resolve(diff.model, diff.model_dir, diff.allow_download,
                    str(feature_cache_dir(config) / "model_hashes.json"))


def report_decoders(config: Config) -> list[tuple[str, str]]:
    """``(roi, target)`` of the branch's two decoders."""
    diff = config.workflow.generate.diffusion
    return [(diff.z_roi, diff.z_target), (diff.c_roi, diff.c_target)]


def methods_text(config: Config) -> str:
    """The methods paragraph of the diffusion branch."""
    diff, dec = config.workflow.generate.diffusion, config.workflow.decoding
    return (
        f" Following Takagi & Nishimoto (2023), each stimulus was described by z, the VAE latent of the "
        f"diffusion model '{diff.model}' (image at {diff.latent_image_size} px, posterior mean times the VAE "
        f"scaling factor), and c, the text encoder's last hidden state averaged over the image's captions. "
        f"Ridge decoders (himalaya; inputs standardised; alpha per target among {len(dec.alphas)} values by "
        f"{dec.cv_folds}-fold cross-validation) mapped {diff.z_roi} betas to z and {diff.c_roi} betas to c. "
        f"Reconstructions: z only (VAE decoding of decoded z); c only (text-to-image from decoded c); z+c "
        f"(img2img of the z image at strength {diff.strength}, conditioned on decoded c); DDIM {diff.steps} steps, "
        f"guidance {diff.guidance_scale} against the empty-caption embedding, {diff.n_samples} samples per image "
        f"with seeds {diff.seed}..{diff.seed + diff.n_samples - 1}."
    )


def init_diffusion_wf(config: Config, inputs: SubjectInputs, names: SubjectOutputs, device: str,
                      name: str = "diffusion_wf") -> pe.Workflow:
    """Build the diffusion branch of one participant.

    Inputs (``inputnode``): ``betas``, ``trials`` (CombineRuns), ``mask_file``, ``roi_files``.
    Outputs (``outputnode``): ``out_files``, the derivatives written (for ordering the report).
    """
    ex, wf_cfg = config.execution, config.workflow
    diff, dec, stim = wf_cfg.generate.diffusion, wf_cfg.decoding, wf_cfg.stimuli
    out_dir = Path(ex.output_dir)
    model = configured_model(config)
    identity = model.identity.to_sidecar()
    settings = {"steps": diff.steps, "strength": diff.strength, "guidance_scale": diff.guidance_scale,
                "n_samples": diff.n_samples, "seed": diff.seed, "batch_size": diff.batch_size,
                "output_size": diff.output_size, "variants": list(diff.variants), "progress": diff.progress}
    from bids_recon.generate.diffusion import DiffusionSettings

    settings_sidecar = DiffusionSettings(**{**settings, "variants": tuple(diff.variants)}).to_sidecar()
    betas_sources = [bids_uri("bids_recon", names.betas(r.session, r.run).as_posix()) for r in inputs.runs]

    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials", "mask_file", "roi_files"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_files"]), name="outputnode")
    latents = pe.Node(StimulusLatents(
        bids_dir=ex.bids_dir, stimuli_folder=stim.folder, captions_file=str(captions_file(config)),
        model_folder=str(model.folder), model_identity=identity, cache_dir=str(feature_cache_dir(config)),
        image_size=diff.latent_image_size, batch_size=diff.batch_size, device=device, progress=diff.progress,
    ), name="stimulus_latents", mem_gb=4.0)
    wf.connect(inputnode, "trials", latents, "trials")

    merge = pe.Node(niu.Merge(N_OUTPUTS), name="merge_outputs")
    decoders = {}
    descriptions = {
        "z": f"VAE latent z of '{diff.model}' at {diff.latent_image_size} px (flattened C x h x w)",
        "c": f"text-encoder last hidden state of '{diff.model}' averaged over captions (flattened L x D)",
    }
    for slot, (space, roi, target) in enumerate([("z", diff.z_roi, diff.z_target), ("c", diff.c_roi, diff.c_target)]):
        decode = pe.Node(Decode(roi=roi, target=target, alphas=[float(a) for a in dec.alphas],
                                cv_folds=dec.cv_folds, device=device), name=f"decode_{space}", mem_gb=4.0)
        sidecar = {"Target": target, "ROI": roi, "TargetDescription": descriptions[space], **identity,
                   "Sources": betas_sources}
        ds_decoder = pe.Node(DerivativesSink(out_file=str(out_dir / names.decoder(roi, target)), sidecar=sidecar),
                             name=f"ds_decoder_{space}")
        ds_decoded = pe.Node(DerivativesSink(
            out_file=str(out_dir / names.features(roi, target)),
            sidecar={"Description": "Decoded ('decoded') and true ('true') features of the test stimuli "
                                    "('stim_ids'), from betas averaged over 'n_trials' presentations",
                     "Target": target, "ROI": roi, "TargetDescription": descriptions[space], **identity}),
            name=f"ds_decoded_{space}")
        wf.connect([
            (inputnode, decode, [("betas", "betas"), ("trials", "trials"), ("mask_file", "mask_file"),
                                 ("roi_files", "roi_files")]),
            (latents, decode, [(f"{space}_features", "features")]),
            (decode, ds_decoder, [("decoder", "in_file"), (("decoder", _json_extra), "extra_files")]),
            (decode, ds_decoded, [("decoded", "in_file")]),
            (ds_decoder, merge, [("out_file", f"in{2 * slot + 1}")]),
            (ds_decoded, merge, [("out_file", f"in{2 * slot + 2}")]),
        ])
        decoders[space] = decode

    recon = pe.Node(DiffusionReconstruct(model_folder=str(model.folder), model_identity=identity, settings=settings,
                                         device=device), name="reconstruct", mem_gb=8.0)
    evaluate = pe.Node(EvaluateVariants(bids_dir=ex.bids_dir, stimuli_folder=stim.folder), name="evaluate")
    write = pe.Node(WriteDiffusionReconstructions(
        output_dir=str(out_dir), subject=names.subject, task=names.task, space=names.space,
        resolution=names.resolution, generator="diffusion",
        sidecar={"Generator": "diffusion", **identity, **settings_sidecar,
                 "Description": "Reconstructions of the test stimuli from repeat-averaged betas: variant z = VAE "
                                "decoding of decoded z, c = text-to-image from decoded c, zc = img2img from the z "
                                "image conditioned on decoded c; 'sample' is 0-based, 'seed' its generator seed; "
                                "'trials' the presentations averaged"},
    ), name="ds_reconstructions")
    ds_metrics = pe.Node(DerivativesSink(
        out_file=str(out_dir / names.metrics("diffusion")),
        sidecar={"Description": "Reconstruction metrics per variant ('method'), averaged over 'samples'; chance of "
                                "a similarity metric = its mean over mismatched pairs; identification chance = 0.5; "
                                "feature metrics of z and c compare decoded and true features z-scored per dimension "
                                "with the training stimuli's mean and sd",
                 "Generator": "diffusion", **identity, **settings_sidecar},
    ), name="ds_metrics")
    wf.connect([
        (decoders["z"], recon, [("decoded", "decoded_z")]),
        (decoders["c"], recon, [("decoded", "decoded_c")]),
        (latents, recon, [("z_features", "z_features"), ("c_features", "c_features"), ("uncond", "uncond")]),
        (recon, evaluate, [("index", "index")]),
        (decoders["z"], evaluate, [("decoded", "decoded_z")]),
        (decoders["c"], evaluate, [("decoded", "decoded_c")]),
        (latents, evaluate, [("z_features", "z_features"), ("c_features", "c_features")]),
        (inputnode, evaluate, [("trials", "trials")]),
        (recon, write, [("index", "index")]),
        (evaluate, write, [("per_item", "per_item")]),
        (evaluate, ds_metrics, [("metrics", "in_file")]),
        (write, merge, [("index_file", "in5")]),
        (ds_metrics, merge, [("out_file", "in6")]),
        (merge, outputnode, [("out", "out_files")]),
    ])
    return wf


def _json_extra(path: str) -> dict[str, str]:
    return {".json": path[: -len(".npz")] + ".json"}
