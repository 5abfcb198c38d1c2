"""The latent-diffusion generator's part of the workflow (Takagi & Nishimoto 2023).

stimulus z/c features (cached) -> ridge decoders (early visual -> z, higher visual -> c) -> z only, c only and
z+c reconstructions -> metrics per variant -> derivatives. What the generator is (settings, flags, decoders,
feature spaces, model, methods text) is its card, :class:`bids_recon.generate.diffusion.DiffusionCard`.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.decoding.reuse import model_signature
from bids_recon.features.bottleneck import space_name
from bids_recon.generate.diffusion import C_TARGET, Z_TARGET, DiffusionCard, configured_model, feature_cache_dir
from bids_recon.interfaces.diffusion import DiffusionReconstruct, EvaluateVariants, StimulusLatents
from bids_recon.interfaces.encoding import StimulusBottleneck
from bids_recon.interfaces.outputs import WriteReconstructions
from bids_recon.naming import SubjectOutputs, own_uri
from bids_recon.params import to_dict
from bids_recon.workflows.encoding import encoding_spaces, named_files
from bids_recon.workflows.evaluation import connect_metrics, evaluation_inputs, metrics_sink
from bids_recon.workflows.generators import builder, connect_decoded, decode_node, generator_methods
from bids_recon.workflows.utils import gather, read_outputs, sink


@builder(DiffusionCard)
def init_diffusion_wf(card: DiffusionCard, config: Config, inputs: SubjectInputs, names: SubjectOutputs, device: str,
                      name: str) -> pe.Workflow:
    """Build the diffusion generator's part of one participant's workflow (see
    :mod:`bids_recon.workflows.generators`)."""
    ex, wf_cfg, diff = config.execution, config.workflow, card.settings(config)
    out_dir = Path(ex.output_dir)
    model = configured_model(config)
    identity = model.identity.to_sidecar()
    signed = {**identity, **model_signature(identity), "Generator": card.name}  # the decoders' sidecars
    params = to_dict(diff)

    wf = pe.Workflow(name=name)
    wf.__desc__ = generator_methods(card, config)
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
    decoded = []  # the decoded features' BIDS URIs, the reconstructions' sources
    descriptions = {
        "z": f"VAE latent z of '{diff.model}' at {diff.latent_image_size} px (flattened C x h x w)",
        "c": f"text-encoder last hidden state of '{diff.model}' averaged over captions (flattened L x D)",
    }
    for space, roi, target in (("z", diff.z_roi, Z_TARGET), ("c", diff.c_roi, C_TARGET)):
        decode = decode_node(card, config, names, roi, target, device, f"decode_{space}", 4.0, signed)
        ds_decoder = sink(out_dir, names.sink("decoder", label=roi, desc=target), f"ds_decoder_{space}", {
            "Target": target, "ROI": roi, "TargetDescription": descriptions[space], **signed,
            "Sources": read_outputs(names, inputs, {roi: wf_cfg.rois.atlas_of(roi)})})
        ds_decoded = sink(out_dir, names.sink("features", label=roi, desc=target), f"ds_decoded_{space}", {
            "Description": "Decoded ('decoded') and true ('true') features of the test stimuli ('stim_ids'), "
                           "from betas averaged over 'n_trials' presentations",
            "Target": target, "ROI": roi, "TargetDescription": descriptions[space], **signed,
            "Sources": [own_uri(names.decoder(roi, target)), *read_outputs(names, inputs)]})
        decoded.append(own_uri(names.features(roi, target)))
        wf.connect([
            (inputnode, decode, [("betas", "betas"), ("trials", "trials"), ("mask_file", "mask_file"),
                                 ("roi_files", "roi_files")]),
            (latents, decode, [(f"{space}_features", "features")]),
        ])
        connect_decoded(wf, decode, ds_decoder, ds_decoded)
        written += [(ds_decoder, "out_file"), (ds_decoded, "out_file")]
        decoders[space] = decode

    recon = pe.Node(DiffusionReconstruct(model_folder=str(model.folder), model_identity=identity, params=params,
                                         device=device), name="reconstruct", mem_gb=8.0)
    evaluate = pe.Node(EvaluateVariants(bids_dir=ex.bids_dir, stimuli=to_dict(wf_cfg.stimuli),
                                        **evaluation_inputs(config, device)), name="evaluate",
                       mem_gb=12.0)  # 11.3 GiB at NSD's full size: never beside encoding_models on 24 GB (encoding.py)
    write = pe.Node(WriteReconstructions(
        output_dir=str(out_dir), names=vars(names), generator=card.name,
        sidecar={"Generator": card.name, **identity, **diff.to_sidecar(),
                 "Description": "Reconstructions of the test stimuli from repeat-averaged betas: variant z = VAE "
                                "decoding of decoded z, c = text-to-image from decoded c, zc = img2img from the z "
                                "image conditioned on decoded c; 'sample' is 0-based, 'seed' its generator seed; "
                                "'trials' the presentations averaged", "Sources": decoded},
    ), name="ds_reconstructions")
    ds_metrics = metrics_sink(
        config, names, card.name, "Reconstruction metrics, one row per (metric, variant ('method')), over "
        "'samples' samples as 'selection' says (the sidecar's Selection and PerSample)",
        "feature metrics of z and c compare decoded and true features z-scored per dimension with the training "
        "stimuli's mean and sd", **identity, **diff.to_sidecar(),
        Sources=[own_uri(names.recon_index(card.name)), *decoded])
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
