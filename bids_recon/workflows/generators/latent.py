"""The latent-vector generator's part of the workflow (Dado et al. 2022, "HYPER").

stimuli's latents (table, or estimated) -> the union of the ROIs -> ridge decoder -> the user's generator ->
metrics (the field's, identification, the paper's latent similarity) -> derivatives. What the generator is
(settings, flags, decoder, checks, methods text) is its card, :class:`bids_recon.generate.latent.LatentCard`; the
domain code is :mod:`bids_recon.generate.latent`.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.decoding.reuse import model_signature
from bids_recon.generate.latent import LATENT_TARGET, LatentCard, generator_identity, latents_path, resolve_rois
from bids_recon.interfaces.latent import EvaluateLatent, GenerateFromLatents, LatentTargets, UnionRoi
from bids_recon.interfaces.outputs import WriteReconstructions
from bids_recon.naming import SubjectOutputs, own_uri
from bids_recon.params import to_dict
from bids_recon.workflows.evaluation import connect_metrics, evaluation_inputs, metrics_sink
from bids_recon.workflows.generators import builder, connect_decoded, decode_node, generator_methods
from bids_recon.workflows.utils import as_extra, gather, read_outputs, sink

#: ``desc-`` of the stimuli's latents written as an output (the decoding targets).
TARGETS = "latenttargets"


@builder(LatentCard)
def init_latent_wf(card: LatentCard, config: Config, inputs: SubjectInputs, names: SubjectOutputs, device: str,
                   name: str) -> pe.Workflow:
    """Build the latent generator's part of one participant's workflow (see :mod:`bids_recon.workflows.generators`)."""
    ex, wf_cfg, lat = config.execution, config.workflow, card.settings(config)
    out_dir = Path(ex.output_dir)
    identity = generator_identity(config)
    params = to_dict(lat)
    rois, label = resolve_rois(lat.roi, wf_cfg.rois.names), card.label(config)
    described = {"Target": LATENT_TARGET, "ROI": label, "ROIs": rois, **identity, **model_signature(identity),
                 "TargetDescription": f"{identity.get('GeneratorLatentDimension', '')}-d latent vector each "
                                      f"stimulus was generated from ({lat.latents})"}

    wf = pe.Workflow(name=name)
    wf.__desc__ = generator_methods(card, config)
    inputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials", "mask_file", "roi_files"]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_files"]), name="outputnode")
    targets = pe.Node(LatentTargets(bids_dir=ex.bids_dir, stimuli=to_dict(wf_cfg.stimuli), params=params,
                                    identity=identity, device=device), name="latent_targets", mem_gb=2.0)
    decode = decode_node(card, config, names, label, LATENT_TARGET, device, "decode", 2.0, identity)
    if len(rois) > 1:
        union = pe.Node(UnionRoi(rois=rois, label=label), name="union_rois")
        wf.connect([(inputnode, union, [("roi_files", "roi_files")]),
                    (union, decode, [("roi_files", "roi_files")])])
    else:
        wf.connect(inputnode, "roi_files", decode, "roi_files")
    generate = pe.Node(GenerateFromLatents(bids_dir=ex.bids_dir, params=params, identity=identity, device=device),
                       name="reconstruct", mem_gb=4.0)
    evaluate = pe.Node(EvaluateLatent(bids_dir=ex.bids_dir, stimuli=to_dict(wf_cfg.stimuli), method=card.name,
                                      **evaluation_inputs(config, device)), name="evaluate", mem_gb=2.0)
    ds_targets = sink(out_dir, names.sink("features", desc=TARGETS), "ds_targets", {
        "Description": "Every stimulus's latent vector ('features', rows 'stim_ids'), the decoders' targets; "
                       "'source' says whether it came from the latents table or was estimated", **described,
        "Sources": [str(latents_path(lat, ex.bids_dir)), own_uri(names.trials())]})
    targets_uri = own_uri(names.features(None, TARGETS))
    ds_decoder = sink(out_dir, names.sink("decoder", label=label, desc=LATENT_TARGET), "ds_decoder", {
        **described, "Sources": [*read_outputs(names, inputs, {r: wf_cfg.rois.atlas_of(r) for r in rois}),
                                 targets_uri]})
    decoded = own_uri(names.features(label, LATENT_TARGET))
    ds_decoded = sink(out_dir, names.sink("features", label=label, desc=LATENT_TARGET), "ds_decoded", {
        "Description": "Decoded ('decoded') and true ('true') latents of the test stimuli ('stim_ids'), from "
                       "betas averaged over 'n_trials' presentations", **described,
        "Sources": [own_uri(names.decoder(label, LATENT_TARGET)), *read_outputs(names, inputs), targets_uri]})
    write_recon = pe.Node(WriteReconstructions(
        output_dir=str(out_dir), names=vars(names), generator=card.name,
        sidecar={"Generator": card.name, **identity, **lat.to_sidecar(),
                 "Description": "Reconstructions of the test stimuli: their decoded latents through the generator "
                                "(repeat-averaged betas; 'trials' is the number of presentations averaged)",
                 "Sources": [decoded]},
    ), name="ds_reconstructions")
    ds_metrics = metrics_sink(
        config, names, card.name, "Reconstruction metrics, one row per (metric, method)",
        "identification_features and feature_corr compare decoded and true latents z-scored per dimension with "
        "the training stimuli's mean and sd; latent_corr and latent_similarity (1/(1+MSE)) compare the raw "
        "latents, as Dado et al. 2022", **identity, **lat.to_sidecar(),
        Sources=[own_uri(names.recon_index(card.name)), decoded])
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
        (evaluate, write_recon, [("per_item", "per_item")]),
        (generate, write_recon, [("reconstructions", "reconstructions")]),
    ])
    connect_decoded(wf, decode, ds_decoder, ds_decoded)
    connect_metrics(wf, evaluate, ds_metrics)
    written = gather(wf, [(ds_targets, "out_file"), (ds_decoder, "out_file"), (ds_decoded, "out_file"),
                          (write_recon, "index_file"), (ds_metrics, "out_file")], "merge_outputs")
    wf.connect(written, "out", outputnode, "out_files")
    return wf
