"""The latent-vector generator (Dado et al. 2022, "HYPER"): decode each stimulus's latent, generate the image.

stimuli's latents (table, or estimated) -> the union of the ROIs -> ridge decoder -> the user's generator ->
metrics (the field's, identification, the paper's latent similarity) -> derivatives. The domain code is
:mod:`bids_recon.generate.latent`; output names come from :mod:`bids_recon.bids.derivatives`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bids_recon.generate.latent import LATENT_TARGET, LatentParams, resolve_rois, roi_label
from bids_recon.workflows.evaluation import evaluation_methods
from bids_recon.workflows.generators import GeneratorSpec, register

if TYPE_CHECKING:  # pragma: no cover
    from bids_recon.config import Config

#: ``desc-`` of the stimuli's latents written as an output (the decoding targets).
TARGETS = "latenttargets"
#: Generator identities found by the preflight, by (generator, latents table, range, dataset).
_IDENTITIES: dict[tuple[str, ...], dict[str, Any]] = {}


def _key(config: Config) -> tuple[str, ...]:
    lat = config.workflow.generate.latent
    return (lat.generator, lat.latents, lat.output_range, str(config.execution.bids_dir))


def generator_identity(config: Config) -> dict[str, Any]:
    """The configured generator's identity (file, sha256, latent dimension, image shape), found once per process.

    Raises the errors of :func:`bids_recon.generate.latent.load_module` (exit 66 when absent, 65 when it does not
    load or does not fit the latents table).
    """
    key = _key(config)
    if key not in _IDENTITIES:
        from bids_recon.generate.latent import check_generator, latents_path, load_module, read_latents

        lat, bids_dir = config.workflow.generate.latent, config.execution.bids_dir
        table = read_latents(latents_path(lat, bids_dir))
        generator = load_module(lat.generator, bids_dir)
        check_generator(generator, table.dim, lat.output_range)
        _IDENTITIES[key] = generator.identity()
    return _IDENTITIES[key]


@register
class LatentGenerator(GeneratorSpec):
    name = "latent"
    params = LatentParams
    summary = ("Dado et al. (2022, HYPER): each stimulus's generator latent (--latents) decoded by ridge, then your "
               "generator (TorchScript or package.module:callable)")
    references = ("dado2022",)
    options_title = "Latent-vector generator (--generator latent)"

    def add_options(self, option, paths) -> None:
        option("--latents", key="latents", type=paths.absolute, metavar="FILE")
        option("--latent-generator", key="generator", type=paths.absolute_if_exists, metavar="FILE|MODULE:CALLABLE")
        option("--latent-range", key="output_range")
        option("--latent-roi", key="roi")
        option("--latent-batch-size", key="batch_size", type=int)
        option("--latent-output-size", key="output_size", type=int)
        option("--missing-latents", key="missing")
        option("--latent-encoder", key="encoder", type=paths.absolute_if_exists, metavar="FILE|MODULE:CALLABLE")
        option("--inversion-steps", key="inversion_steps", type=int)
        option("--inversion-lr", key="inversion_lr", type=float)
        option("--inversion-seed", key="inversion_seed", type=int)

    def label(self, config: Config) -> str:
        """``label-`` of the decoder's voxels."""
        return roi_label(self.settings(config).roi, config.workflow.rois.names)

    def decoders(self, config: Config) -> list[tuple[str, str]]:
        return [(self.label(config), LATENT_TARGET)]

    def check_inputs(self, config: Config, inputs, checked) -> None:
        from bids_recon.generate.latent import check_latent_inputs

        lat = self.settings(config)
        resolve_rois(lat.roi, config.workflow.rois.names)
        found = check_latent_inputs(lat, checked.stim_ids, config.execution.bids_dir)
        _IDENTITIES[_key(config)] = found.generator.identity()

    def prepare(self, config: Config) -> None:
        generator_identity(config)

    def methods(self, config: Config) -> str:
        lat, dec = self.settings(config), config.workflow.decoding
        rois = resolve_rois(lat.roi, config.workflow.rois.names)
        voxels = f"the union of {', '.join(rois)}" if len(rois) > 1 else rois[0]
        missing = {"error": "",
                   "invert": f" Stimuli without a latent got one by optimisation through the generator (Adam, "
                             f"{lat.inversion_steps} steps, learning rate {lat.inversion_lr:g}, pixel mean squared "
                             f"error, seeded starts; the loss of each image is in the targets' sidecar).",
                   "encode": " Stimuli without a latent got one from the encoder."}[lat.missing]
        span = "[-1, 1]" if lat.output_range == "signed" else "[0, 1]"
        return (f"Following Dado et al. (2022), the decoding target of each stimulus was the latent vector its image "
                f"was generated from ('{Path(lat.latents).name}').{missing} A decoder ({dec.methods()}) mapped "
                f"{voxels} betas of single training trials to the latents, and decoded repeat-averaged test betas. "
                f"The decoded latents were fed to the generator '{lat.generator}' (images in {span}, batches of "
                f"{lat.batch_size}). Decoded and true latents were compared by their correlation and by 1/(1+MSE) "
                f"(the paper's latent similarity). {evaluation_methods(config, 1, 'the decoded latent space')}")

    def init_wf(self, config, inputs, names, device, name):
        from nipype.interfaces import utility as niu
        from nipype.pipeline import engine as pe

        from bids_recon.bids.derivatives import bids_uri
        from bids_recon.interfaces.latent import EvaluateLatent, GenerateFromLatents, LatentTargets, UnionRoi
        from bids_recon.interfaces.outputs import WriteReconstructions
        from bids_recon.interfaces.stages import Decode
        from bids_recon.params import to_dict
        from bids_recon.workflows.evaluation import connect_metrics, evaluation_inputs, metrics_sink
        from bids_recon.workflows.utils import as_extra, decoder_sidecar, gather, sink

        ex, wf_cfg, lat = config.execution, config.workflow, self.settings(config)
        out_dir = Path(ex.output_dir)
        identity = generator_identity(config)
        params = to_dict(lat)
        rois, label = resolve_rois(lat.roi, wf_cfg.rois.names), self.label(config)
        described = {"Target": LATENT_TARGET, "ROI": label, "ROIs": rois, **identity,
                     "TargetDescription": f"{identity.get('GeneratorLatentDimension', '')}-d latent vector each "
                                          f"stimulus was generated from ({lat.latents})"}

        wf = pe.Workflow(name=name)
        wf.__desc__ = self.methods(config)
        inputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials", "mask_file", "roi_files"]),
                            name="inputnode")
        outputnode = pe.Node(niu.IdentityInterface(fields=["out_files"]), name="outputnode")
        targets = pe.Node(LatentTargets(bids_dir=ex.bids_dir, stimuli=to_dict(wf_cfg.stimuli), params=params,
                                        identity=identity, device=device), name="latent_targets", mem_gb=2.0)
        decode = pe.Node(Decode(roi=label, target=LATENT_TARGET, params=to_dict(wf_cfg.decoding), device=device),
                         name="decode", mem_gb=2.0)
        if len(rois) > 1:
            union = pe.Node(UnionRoi(rois=rois, label=label), name="union_rois")
            wf.connect([(inputnode, union, [("roi_files", "roi_files")]),
                        (union, decode, [("roi_files", "roi_files")])])
        else:
            wf.connect(inputnode, "roi_files", decode, "roi_files")
        generate = pe.Node(GenerateFromLatents(bids_dir=ex.bids_dir, params=params, identity=identity, device=device),
                           name="reconstruct", mem_gb=4.0)
        evaluate = pe.Node(EvaluateLatent(bids_dir=ex.bids_dir, stimuli=to_dict(wf_cfg.stimuli), method=self.name,
                                          **evaluation_inputs(config, device)), name="evaluate", mem_gb=2.0)
        ds_targets = sink(out_dir, names.sink("features", desc=TARGETS), "ds_targets", {
            "Description": "Every stimulus's latent vector ('features', rows 'stim_ids'), the decoders' targets; "
                           "'source' says whether it came from the latents table or was estimated", **described})
        ds_decoder = sink(out_dir, names.sink("decoder", label=label, desc=LATENT_TARGET), "ds_decoder", {
            **described, "Sources": [bids_uri("bids_recon", names.betas(r.session, r.run, task=r.task).as_posix())
                                     for r in inputs.runs]})
        ds_decoded = sink(out_dir, names.sink("features", label=label, desc=LATENT_TARGET), "ds_decoded", {
            "Description": "Decoded ('decoded') and true ('true') latents of the test stimuli ('stim_ids'), from "
                           "betas averaged over 'n_trials' presentations", **described})
        write_recon = pe.Node(WriteReconstructions(
            output_dir=str(out_dir), names=vars(names), generator=self.name,
            sidecar={"Generator": self.name, **identity, **lat.to_sidecar(),
                     "Description": "Reconstructions of the test stimuli: their decoded latents through the generator "
                                    "(repeat-averaged betas; 'trials' is the number of presentations averaged)"},
        ), name="ds_reconstructions")
        ds_metrics = metrics_sink(
            config, names, self.name, "Reconstruction metrics, one row per (metric, method)",
            "identification_features and feature_corr compare decoded and true latents z-scored per dimension with "
            "the training stimuli's mean and sd; latent_corr and latent_similarity (1/(1+MSE)) compare the raw "
            "latents, as Dado et al. 2022", **identity, **lat.to_sidecar())
        wf.connect([
            (inputnode, targets, [("trials", "trials")]),
            (inputnode, decode, [("betas", "betas"), ("trials", "trials"), ("mask_file", "mask_file")]),
            (targets, decode, [("features", "features")]),
            (decode, generate, [("decoded", "decoded")]),
            (generate, evaluate, [("reconstructions", "reconstructions")]),
            (decode, evaluate, [("decoded", "decoded")]),
            (targets, evaluate, [("features", "features")]),
            (inputnode, evaluate, [("trials", "trials")]),
            (targets, ds_targets, [("features", "in_file"), (("provenance", as_extra, ".json"), "extra_files")]),
            (decode, ds_decoder, [("decoder", "in_file"), (("decoder", decoder_sidecar), "extra_files")]),
            (decode, ds_decoded, [("decoded", "in_file")]),
            (evaluate, write_recon, [("per_item", "per_item")]),
            (generate, write_recon, [("reconstructions", "reconstructions")]),
        ])
        connect_metrics(wf, evaluate, ds_metrics)
        written = gather(wf, [(ds_targets, "out_file"), (ds_decoder, "out_file"), (ds_decoded, "out_file"),
                              (write_recon, "index_file"), (ds_metrics, "out_file")], "merge_outputs")
        wf.connect(written, "out", outputnode, "out_files")
        return wf
