"""The latent-diffusion generator of Takagi & Nishimoto (2023).

stimulus z/c features (cached) -> ridge decoders (early visual -> z, higher visual -> c) -> z only, c only and
z+c reconstructions -> metrics per variant -> derivatives. Output names come from
:mod:`bids_recon.bids.derivatives`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from bids_recon.generate.diffusion import C_TARGET, Z_TARGET, DiffusionParams
from bids_recon.workflows.evaluation import evaluation_methods
from bids_recon.workflows.generators import GeneratorSpec, register

if TYPE_CHECKING:  # pragma: no cover
    from bids_recon.config import Config
    from bids_recon.generate.models import ResolvedModel


def feature_cache_dir(config: Config) -> Path:
    """The feature cache folder: ``feature_cache`` or ``<work_dir>/feature_cache``."""
    diff = config.workflow.generate.diffusion
    return Path(diff.feature_cache) if diff.feature_cache else Path(config.execution.work_dir) / "feature_cache"


@functools.cache
def _resolve(spec: str, model_dir: str, allow_download: bool, hash_cache: str) -> ResolvedModel:
    from bids_recon.generate.models import resolve_model

    return resolve_model(spec, model_dir or None, allow_download, Path(hash_cache))


def configured_model(config: Config) -> ResolvedModel:
    """Resolve the configured model once per process (raises ``MissingInputError``, exit 66, when absent)."""
    diff = config.workflow.generate.diffusion
    return _resolve(diff.model, diff.model_dir, config.execution.allow_download,
                    str(feature_cache_dir(config) / "model_hashes.json"))


@register
class DiffusionGenerator(GeneratorSpec):
    name = "diffusion"
    params = DiffusionParams
    summary = "Takagi & Nishimoto (2023): decoded VAE latent z and caption embedding c, latent-diffusion img2img"
    roi_settings = ("z_roi", "c_roi")
    references = ("rombach2022",)
    options_title = "Latent diffusion (--generator diffusion)"
    fetch_groups = ("diffusion",)
    encoding_default = True
    encoding_partition = ("z", "c")

    def add_options(self, option, paths) -> None:
        option("--model", key="model", type=paths.absolute_if_exists)
        option("--model-dir", key="model_dir", type=paths.absolute, metavar="DIR")
        option("--captions", key="workflow.stimuli.captions", type=paths.absolute, metavar="FILE|DIR")
        option("--category-captions", key="workflow.stimuli.category_captions", action="store_const", const=True)
        option("--synset-words", key="workflow.stimuli.synset_words", type=paths.absolute, metavar="FILE")
        option("--feature-cache", key="feature_cache", type=paths.absolute, metavar="DIR")
        option("--latent-image-size", key="latent_image_size", type=int)
        option("--diffusion-steps", key="steps", type=int)
        option("--strength", key="strength", type=float)
        option("--guidance-scale", key="guidance_scale", type=float)
        option("--n-samples", key="n_samples", type=int)
        option("--diffusion-seed", key="seed", type=int)
        option("--diffusion-batch-size", key="batch_size", type=int)
        option("--output-size", key="output_size", type=int)
        option("--variants", key="variants", nargs="+")
        option("--no-progress", key="progress", action="store_const", const=False, help="no progress bars")
        option("--z-roi", key="z_roi")
        option("--c-roi", key="c_roi")

    def decoders(self, config: Config) -> list[tuple[str, str]]:
        diff = self.settings(config)
        return [(diff.z_roi, Z_TARGET), (diff.c_roi, C_TARGET)]

    def feature_spaces(self, config: Config) -> dict[str, str]:
        from bids_recon.features.bottleneck import space_name

        diff = self.settings(config)
        spaces = {"z": f"the VAE latent of '{diff.model}' at {diff.latent_image_size} px",
                  "c": f"the text encoder's last hidden state of '{diff.model}' averaged over the captions"}
        for level in config.workflow.encoding.zc_noise_levels:
            spaces[space_name(level)] = (f"z_c, the U-Net's bottleneck (mid-block output) for z noised to {level:g} "
                                         "of the diffusion schedule and conditioned on c")
        return spaces

    def check_inputs(self, config: Config, inputs, checked) -> None:
        from bids_recon.bids.checks import check_captions
        from bids_recon.features import resolver_for

        check_captions(resolver_for(config.execution.bids_dir, config.workflow.stimuli), checked.stim_ids)

    def prepare(self, config: Config) -> None:
        configured_model(config)

    def methods(self, config: Config) -> str:
        diff, dec = self.settings(config), config.workflow.decoding
        return (
            f"Following Takagi & Nishimoto (2023), each stimulus was described by z, the VAE latent of the "
            f"diffusion model '{diff.model}' (image at {diff.latent_image_size} px, posterior mean times the VAE "
            f"scaling factor), and c, the text encoder's last hidden state averaged over the image's captions. "
            f"Decoders ({dec.methods()}) mapped {diff.z_roi} betas to z and {diff.c_roi} betas to c. "
            f"Reconstructions: z only (VAE decoding of decoded z); c only (text-to-image from decoded c); z+c "
            f"(img2img of the z image at strength {diff.strength}, conditioned on decoded c); DDIM {diff.steps} "
            f"steps, guidance {diff.guidance_scale} against the empty-caption embedding, {diff.n_samples} samples "
            f"per image with seeds {diff.seed}..{diff.seed + diff.n_samples - 1}. "
            + evaluation_methods(config, diff.n_samples, "the decoded feature spaces for z and c")
        )

    def init_wf(self, config, inputs, names, device, name):
        from nipype.interfaces import utility as niu
        from nipype.pipeline import engine as pe

        from bids_recon.bids.derivatives import bids_uri
        from bids_recon.interfaces.diffusion import DiffusionReconstruct, EvaluateVariants, StimulusLatents
        from bids_recon.interfaces.outputs import WriteReconstructions
        from bids_recon.interfaces.stages import Decode
        from bids_recon.params import to_dict
        from bids_recon.workflows.encoding import encoding_spaces, named_files
        from bids_recon.workflows.evaluation import connect_metrics, evaluation_inputs, metrics_sink
        from bids_recon.workflows.utils import decoder_sidecar, gather, sink

        ex, wf_cfg, diff = config.execution, config.workflow, self.settings(config)
        out_dir = Path(ex.output_dir)
        model = configured_model(config)
        identity = model.identity.to_sidecar()
        params = to_dict(diff)
        betas_sources = [bids_uri("bids_recon", names.betas(r.session, r.run, task=r.task).as_posix())
                         for r in inputs.runs]

        wf = pe.Workflow(name=name)
        wf.__desc__ = self.methods(config)
        inputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials", "mask_file", "roi_files"]),
                            name="inputnode")
        outputnode = pe.Node(niu.IdentityInterface(fields=["out_files", "features"]), name="outputnode")
        latents = pe.Node(StimulusLatents(
            bids_dir=ex.bids_dir, stimuli=to_dict(wf_cfg.stimuli),
            model_folder=str(model.folder), model_identity=identity, cache_dir=str(feature_cache_dir(config)),
            params=params, device=device,
        ), name="stimulus_latents", mem_gb=4.0)
        wf.connect(inputnode, "trials", latents, "trials")

        written = []
        decoders = {}
        descriptions = {
            "z": f"VAE latent z of '{diff.model}' at {diff.latent_image_size} px (flattened C x h x w)",
            "c": f"text-encoder last hidden state of '{diff.model}' averaged over captions (flattened L x D)",
        }
        for space, roi, target in (("z", diff.z_roi, Z_TARGET), ("c", diff.c_roi, C_TARGET)):
            decode = pe.Node(Decode(roi=roi, target=target, params=to_dict(wf_cfg.decoding), device=device),
                             name=f"decode_{space}", mem_gb=4.0)
            ds_decoder = sink(out_dir, names.sink("decoder", label=roi, desc=target), f"ds_decoder_{space}", {
                "Target": target, "ROI": roi, "TargetDescription": descriptions[space], **identity,
                "Sources": betas_sources})
            ds_decoded = sink(out_dir, names.sink("features", label=roi, desc=target), f"ds_decoded_{space}", {
                "Description": "Decoded ('decoded') and true ('true') features of the test stimuli ('stim_ids'), "
                               "from betas averaged over 'n_trials' presentations",
                "Target": target, "ROI": roi, "TargetDescription": descriptions[space], **identity})
            wf.connect([
                (inputnode, decode, [("betas", "betas"), ("trials", "trials"), ("mask_file", "mask_file"),
                                     ("roi_files", "roi_files")]),
                (latents, decode, [(f"{space}_features", "features")]),
                (decode, ds_decoder, [("decoder", "in_file"), (("decoder", decoder_sidecar), "extra_files")]),
                (decode, ds_decoded, [("decoded", "in_file")]),
            ])
            written += [(ds_decoder, "out_file"), (ds_decoded, "out_file")]
            decoders[space] = decode

        recon = pe.Node(DiffusionReconstruct(model_folder=str(model.folder), model_identity=identity, params=params,
                                             device=device), name="reconstruct", mem_gb=8.0)
        evaluate = pe.Node(EvaluateVariants(bids_dir=ex.bids_dir, stimuli=to_dict(wf_cfg.stimuli),
                                            **evaluation_inputs(config, device)), name="evaluate", mem_gb=4.0)
        write = pe.Node(WriteReconstructions(
            output_dir=str(out_dir), names=vars(names), generator=self.name,
            sidecar={"Generator": self.name, **identity, **diff.to_sidecar(),
                     "Description": "Reconstructions of the test stimuli from repeat-averaged betas: variant z = VAE "
                                    "decoding of decoded z, c = text-to-image from decoded c, zc = img2img from the z "
                                    "image conditioned on decoded c; 'sample' is 0-based, 'seed' its generator seed; "
                                    "'trials' the presentations averaged"},
        ), name="ds_reconstructions")
        ds_metrics = metrics_sink(
            config, names, self.name, "Reconstruction metrics, one row per (metric, variant ('method')), over "
            "'samples' samples as 'selection' says (the sidecar's Selection and PerSample)",
            "feature metrics of z and c compare decoded and true features z-scored per dimension with the training "
            "stimuli's mean and sd", **identity, **diff.to_sidecar())
        wf.connect([
            (decoders["z"], recon, [("decoded", "decoded_z")]),
            (decoders["c"], recon, [("decoded", "decoded_c")]),
            (latents, recon, [("z_features", "z_features"), ("c_features", "c_features"), ("uncond", "uncond")]),
            (recon, evaluate, [("index", "index")]),
            (decoders["z"], evaluate, [("decoded", "decoded_z")]),
            (decoders["c"], evaluate, [("decoded", "decoded_c")]),
            (latents, evaluate, [("z_features", "z_features"), ("c_features", "c_features")]),
            (inputnode, evaluate, [("trials", "trials")]),
            (recon, write, [("index", "reconstructions")]),
            (evaluate, write, [("per_item", "per_item")]),
        ])
        connect_metrics(wf, evaluate, ds_metrics)
        written += [(write, "index_file"), (ds_metrics, "out_file")]
        wf.connect(gather(wf, written, "merge_outputs"), "out", outputnode, "out_files")

        # feature files of the encoding models: z and c, and z_c at the levels they model (computed only then)
        from bids_recon.features.bottleneck import space_name
        from bids_recon.interfaces.encoding import StimulusBottleneck

        wanted = encoding_spaces(config)
        levels = [lv for lv in wf_cfg.encoding.zc_noise_levels if space_name(lv) in wanted]
        feature_files = [(latents, "z_features"), (latents, "c_features")]
        if levels:
            bottleneck = pe.Node(StimulusBottleneck(
                model_folder=str(model.folder), model_identity=identity, cache_dir=str(feature_cache_dir(config)),
                levels=levels, seed=ex.random_seed, batch_size=diff.batch_size, progress=diff.progress,
                device=device), name="stimulus_bottleneck", mem_gb=4.0)
            wf.connect(latents, "z_features", bottleneck, "z_features")
            wf.connect(latents, "c_features", bottleneck, "c_features")
            feature_files.append((bottleneck, "feature_files"))
        wf.connect(gather(wf, feature_files, "merge_features"),
                   ("out", named_files, ["z", "c", *(space_name(lv) for lv in levels)]), outputnode, "features")
        return wf
