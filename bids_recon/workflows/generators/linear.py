"""The linear generator's part of the workflow: image features -> decoder -> reconstructions -> metrics -> outputs.

What the generator is (settings, flags, decoder, methods text) is its card,
:class:`bids_recon.generate.linear.LinearCard`.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.generate.linear import TARGET, LinearCard
from bids_recon.interfaces.outputs import WriteReconstructions
from bids_recon.interfaces.stages import Evaluate, ImageFeatures, Reconstruct
from bids_recon.naming import SubjectOutputs, own_uri
from bids_recon.params import to_dict
from bids_recon.workflows.encoding import named_files
from bids_recon.workflows.evaluation import connect_metrics, evaluation_inputs, metrics_sink
from bids_recon.workflows.generators import builder, connect_decoded, decode_node, generator_methods
from bids_recon.workflows.utils import gather, read_outputs, sink


@builder(LinearCard)
def init_linear_wf(card: LinearCard, config: Config, inputs: SubjectInputs, names: SubjectOutputs, device: str,
                   name: str) -> pe.Workflow:
    """Build the linear generator's part of one participant's workflow (see :mod:`bids_recon.workflows.generators`)."""
    ex, wf_cfg, lin = config.execution, config.workflow, card.settings(config)
    out_dir = Path(ex.output_dir)
    wf = pe.Workflow(name=name)
    wf.__desc__ = generator_methods(card, config)
    inputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials", "mask_file", "roi_files"]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_files", "features"]), name="outputnode")
    decode = decode_node(card, config, names, lin.roi, TARGET, device, "decode", 2.0)
    basis_sidecar = {"Description": f"PCA basis of the training images' pixels ({lin.image_size} px): 'mean', "
                                    "'components' (n_components x pixels), 'explained_variance_ratio', 'image_shape'",
                     "Target": TARGET, "ROI": lin.roi, "Sources": [own_uri(names.trials())]}
    if wf_cfg.decoding.decoders_from:  # the earlier run's basis: its decoder predicts coefficients of that basis
        from bids_recon.decoding.reuse import find_basis, find_source_decoders, source_record
        from bids_recon.interfaces.reuse import ReusedBasisFeatures

        source = find_source_decoders(wf_cfg.decoding.decoders_from, names.subject, names.task,
                                      card.decoders(config))[(lin.roi, TARGET)]
        basis_file = find_basis(source, f"this run ({ex.output_dir})")
        basis_sidecar["BasisSource"] = source_record(basis_file)
        features = pe.Node(ReusedBasisFeatures(bids_dir=ex.bids_dir, stimuli=to_dict(wf_cfg.stimuli),
                                               basis=str(basis_file), image_size=lin.image_size),
                           name="image_features")
    else:
        features = pe.Node(ImageFeatures(bids_dir=ex.bids_dir, stimuli=to_dict(wf_cfg.stimuli),
                                         params=to_dict(lin), seed=ex.random_seed), name="image_features")
    ds_basis = sink(out_dir, names.sink("basis", label=lin.roi, desc=TARGET), "ds_basis", basis_sidecar)
    recon = pe.Node(Reconstruct(), name="reconstruct")
    evaluate = pe.Node(Evaluate(bids_dir=ex.bids_dir, stimuli=to_dict(wf_cfg.stimuli), method=card.name,
                                **evaluation_inputs(config, device)), name="evaluate", mem_gb=2.0)
    ds_decoder = sink(out_dir, names.sink("decoder", label=lin.roi, desc=TARGET), "ds_decoder", {
        "Target": TARGET, "ROI": lin.roi, "Generator": card.name,
        "TargetDescription": f"{lin.n_components}-component PCA of training-image pixels at {lin.image_size} px",
        "Sources": read_outputs(names, inputs, {lin.roi: wf_cfg.rois.atlas_of(lin.roi)})})
    decoder = own_uri(names.decoder(lin.roi, TARGET))
    ds_decoded = sink(out_dir, names.sink("features", label=lin.roi, desc=TARGET), "ds_decoded", {
        "Description": "Decoded ('decoded') and true ('true') features of the test stimuli ('stim_ids'), from "
                       "betas averaged over 'n_trials' presentations", "Target": TARGET, "ROI": lin.roi,
        "Sources": [decoder, *read_outputs(names, inputs)]})
    decoded = own_uri(names.features(lin.roi, TARGET))
    write_recon = pe.Node(WriteReconstructions(
        output_dir=str(out_dir), names=vars(names), generator=card.name,
        sidecar={"Generator": card.name, "Description": "Reconstructions of the test stimuli from "
                 "repeat-averaged betas; 'trials' is the number of presentations averaged", "Sources": [decoded]},
    ), name="ds_reconstructions")
    ds_metrics = metrics_sink(config, names, card.name, "Reconstruction metrics, one row per (metric, method)",
                              Sources=[own_uri(names.recon_index(card.name)), decoded])
    wf.connect([
        (inputnode, features, [("trials", "trials")]),
        (inputnode, decode, [("betas", "betas"), ("trials", "trials"), ("mask_file", "mask_file"),
                             ("roi_files", "roi_files")]),
        (features, decode, [("features", "features")]),
        (decode, recon, [("decoded", "decoded")]),
        (features, recon, [("basis", "basis")]),
        (recon, evaluate, [("reconstructions", "reconstructions")]),
        (decode, evaluate, [("decoded", "decoded")]),
        (features, ds_basis, [("basis", "in_file")]),
        (evaluate, write_recon, [("per_item", "per_item")]),
        (recon, write_recon, [("reconstructions", "reconstructions")]),
    ])
    connect_decoded(wf, decode, ds_decoder, ds_decoded)
    connect_metrics(wf, evaluate, ds_metrics)
    written = gather(wf, [(ds_decoder, "out_file"), (ds_decoded, "out_file"), (ds_basis, "out_file"),
                          (write_recon, "index_file"), (ds_metrics, "out_file")], "merge_outputs")
    wf.connect(written, "out", outputnode, "out_files")
    wf.connect(gather(wf, [(features, "features")], "merge_features"), ("out", named_files, [TARGET]),
               outputnode, "features")
    return wf
