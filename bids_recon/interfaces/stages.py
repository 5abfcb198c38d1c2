"""Interfaces of the decoding stages: ROIs, stimulus features, decoders, generation, evaluation."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, isdefined, traits

from bids_recon.decoding import DecodedTest, train_and_decode
from bids_recon.decoding.params import DecodingParams
from bids_recon.design.table import read_trials
from bids_recon.evaluate import MetricsResult, evaluate_generated
from bids_recon.evaluate.params import EvaluationParams
from bids_recon.features import ImageBasis, image_targets, resolver_for
from bids_recon.features.params import StimulusParams
from bids_recon.generate.linear import LinearImageGenerator, LinearParams
from bids_recon.glm.runs import read_betas
from bids_recon.interfaces.base import RecordingInterface, load_params, params_trait
from bids_recon.invariants import check_features, check_finite, check_metric_table
from bids_recon.io import atomic_write, save_npz, write_json, write_tsv
from bids_recon.rois import RoiParams, build_rois, roi_columns
from bids_recon.rois.selection import apply_voxel_selection


class _RoisInputSpec(BaseInterfaceInputSpec):
    mask_file = File(exists=True, mandatory=True, desc="subject brain mask (BOLD grid)")
    params = params_trait(RoiParams)
    subject = traits.Str("", usedefault=True, desc="participant ({subject} in user mask paths)")
    space = traits.Str("", usedefault=True, desc="space of the BOLD or imported betas (the atlas only in its own)")
    datasets = traits.Dict(traits.Str, traits.Str, desc="dataset name -> root: user masks named by BIDS URIs")
    betas = File(exists=True, desc="z-scored betas (.npy): --voxel-selection rates voxels with them")
    trials = File(exists=True, desc="the trial table of the betas (--voxel-selection)")


class _RoisOutputSpec(TraitedSpec):
    roi_files = traits.Dict(traits.Str, File(exists=True), desc="ROI name -> mask in the BOLD grid")
    roi_sidecars = traits.Dict(traits.Str, File(exists=True), desc="ROI name -> JSON (voxel count, sources)")


class Rois(RecordingInterface):
    """Visual ROI masks in the BOLD grid."""

    input_spec = _RoisInputSpec
    output_spec = _RoisOutputSpec

    def _run(self, runtime):
        i = self.inputs
        params = load_params(RoiParams, i.params, "workflow.rois")
        brain = nib.load(i.mask_file)
        masks, sources = build_rois(brain, params, subject=i.subject or None, space=i.space or None)
        selected = apply_voxel_selection(masks, brain, params, i.betas if isdefined(i.betas) else None,
                                         i.trials if isdefined(i.trials) else None)
        datasets = {k: Path(v) for k, v in (i.datasets or {}).items()} if isdefined(i.datasets) else {}
        cwd = Path(runtime.cwd)
        files, sidecars = {}, {}
        for name, mask in masks.items():
            img = nib.Nifti1Image(mask.astype(np.uint8), brain.affine)
            files[name] = str(atomic_write(cwd / f"roi-{name}.nii.gz", lambda tmp, img=img: nib.save(img, tmp)))
            info = {**sources[name].sidecar(datasets), **selected.get(name, {}), "Voxels": int(mask.sum())}
            sidecars[name] = str(write_json(cwd / f"roi-{name}.json", info))
        self._results["roi_files"] = files
        self._results["roi_sidecars"] = sidecars


class _ImageFeaturesInputSpec(BaseInterfaceInputSpec):
    trials = File(exists=True, mandatory=True)
    bids_dir = traits.Str(mandatory=True)
    stimuli = params_trait(StimulusParams)
    params = params_trait(LinearParams)
    seed = traits.Int(mandatory=True, desc="seed of the randomized PCA")


class _ImageFeaturesOutputSpec(TraitedSpec):
    basis = File(exists=True, desc="image basis (.npz)")
    features = File(exists=True, desc="stim_ids and coefficients (.npz)")


class ImageFeatures(RecordingInterface):
    """PCA basis of the training images and the coefficients of every stimulus."""

    input_spec = _ImageFeaturesInputSpec
    output_spec = _ImageFeaturesOutputSpec

    def _run(self, runtime):
        i = self.inputs
        params = load_params(LinearParams, i.params, "workflow.generate.linear")
        resolver = resolver_for(i.bids_dir, load_params(StimulusParams, i.stimuli, "workflow.stimuli"))
        basis, stim_ids, coefficients = image_targets(resolver, read_trials(i.trials), params.image_size,
                                                      params.n_components, i.seed)
        cwd = Path(runtime.cwd)
        check_features(stim_ids, coefficients, "image PCA coefficients", cwd / "features.npz")
        self._results["basis"] = str(basis.save(cwd / "basis.npz"))
        self._results["features"] = str(save_npz(cwd / "features.npz", stim_ids=stim_ids, features=coefficients))


class _DecodeInputSpec(BaseInterfaceInputSpec):
    betas = File(exists=True, mandatory=True, desc="z-scored betas .npy (n_trials, n_brain_voxels)")
    trials = File(exists=True, mandatory=True)
    mask_file = File(exists=True, mandatory=True, desc="subject brain mask")
    roi_files = traits.Dict(traits.Str, File(exists=True), mandatory=True)
    roi = traits.Str(mandatory=True, desc="which ROI feeds the decoder")
    features = File(exists=True, mandatory=True, desc="features .npz (stim_ids, features)")
    target = traits.Str(mandatory=True, desc="name of the decoded feature space")
    params = params_trait(DecodingParams)
    device = traits.Enum("cpu", "cuda", usedefault=True)
    stimulus_ids = traits.Str("", usedefault=True, desc="the resolver kind naming the stimulus ids (sidecar)")


class _DecodeOutputSpec(TraitedSpec):
    decoder = File(exists=True, desc="decoder .npz (+ .json sidecar beside it)")
    decoded = File(exists=True, desc="decoded and true features of the test stimuli (.npz)")


class Decode(RecordingInterface):
    """Fit a ridge decoder on training trials; decode repeat-averaged test stimuli."""

    input_spec = _DecodeInputSpec
    output_spec = _DecodeOutputSpec

    def _run(self, runtime):
        i = self.inputs
        from bids_recon.errors import UsageError

        params = load_params(DecodingParams, i.params, "workflow.decoding")
        if i.roi not in i.roi_files:
            raise UsageError(f"decoder ROI '{i.roi}' is not one of the ROIs ({', '.join(i.roi_files)})")
        voxel_indices = roi_columns(nib.load(i.mask_file), nib.load(i.roi_files[i.roi]))
        with np.load(i.features) as data:
            stim_ids, features = data["stim_ids"].astype(str), data["features"]
        check_features(stim_ids, features, f"'{i.target}' features", i.features)
        betas, trials = read_betas(i.betas, i.trials, i.mask_file)  # only the ROI's columns are read
        decoder, decoded = train_and_decode(betas, trials, voxel_indices, stim_ids, features, params, i.device)
        cwd = Path(runtime.cwd)
        sidecar = {"ROI": i.roi, "Target": i.target, "Device": i.device,
                   **({"StimulusIds": i.stimulus_ids} if i.stimulus_ids else {})}
        self._results["decoder"] = str(decoder.save(cwd / "decoder.npz", sidecar))
        self._results["decoded"] = str(decoded.save(cwd / "decoded.npz"))


class _ReconstructInputSpec(BaseInterfaceInputSpec):
    decoded = File(exists=True, mandatory=True)
    basis = File(exists=True, mandatory=True)


class _ReconstructOutputSpec(TraitedSpec):
    reconstructions = File(exists=True, desc=".npz with stim_ids, n_trials, images (n, H, W, 3)")


class Reconstruct(RecordingInterface):
    """Images from decoded PCA coefficients (the linear generator)."""

    input_spec = _ReconstructInputSpec
    output_spec = _ReconstructOutputSpec

    def _run(self, runtime):
        decoded = DecodedTest.load(self.inputs.decoded)
        generator = LinearImageGenerator(ImageBasis.load(self.inputs.basis))
        images = generator.generate(decoded.decoded)
        check_finite(images, "reconstructed images", Path(runtime.cwd) / "reconstructions.npz")
        out = save_npz(Path(runtime.cwd) / "reconstructions.npz", stim_ids=decoded.stim_ids,
                       n_trials=decoded.n_trials, images=images.astype(np.float32))
        self._results["reconstructions"] = str(out)


class EvaluationInputSpec(BaseInterfaceInputSpec):
    """Inputs of every evaluation node (extend it): the settings, the device, the evaluation networks' weights."""

    params = params_trait(EvaluationParams)
    device = traits.Enum("cpu", "cuda", usedefault=True)
    allow_download = traits.Bool(False, usedefault=True, desc="download missing network weights")
    weights = traits.Dict(traits.Str, traits.Str, desc="network -> weight file identity (in the node's hash, so "
                                                       "that the node runs again once weights are fetched)")
    hash_cache = traits.Str("", usedefault=True, desc="JSON file remembering the weight files' sha256")


class EvaluationOutputSpec(TraitedSpec):
    metrics = File(exists=True, desc="one row per (metric, variant); its .json sidecar (provenance) beside it")
    per_item = File(exists=True, desc="one row per test stimulus (and variant, sample)")


def evaluation_options(inputs) -> dict:
    """Keyword arguments of :func:`~bids_recon.evaluate.evaluate_generated` from an evaluation node's inputs.

    The workflow logs the metrics it cannot compute once before any work, so the node does not repeat it.
    """
    return {"params": load_params(EvaluationParams, inputs.params, "workflow.evaluate"), "device": inputs.device,
            "allow_download": inputs.allow_download, "hash_cache": Path(inputs.hash_cache) if inputs.hash_cache
            else None, "log_skips": False}


def write_evaluation(cwd: Path, result: MetricsResult, per_item=None) -> dict[str, str]:
    """``metrics.tsv`` with its ``metrics.json`` provenance, and ``per_item.tsv``, in a node's folder (the table
    checked: every computed metric finite)."""
    check_metric_table(result.table, "metrics table", cwd / "metrics.tsv")
    metrics = write_tsv(cwd / "metrics.tsv", result.table)
    write_json(cwd / "metrics.json", result.provenance)
    return {"metrics": str(metrics),
            "per_item": str(write_tsv(cwd / "per_item.tsv", result.per_item if per_item is None else per_item))}


class _EvaluateInputSpec(EvaluationInputSpec):
    reconstructions = File(exists=True, mandatory=True)
    decoded = File(exists=True, mandatory=True)
    bids_dir = traits.Str(mandatory=True)
    stimuli = params_trait(StimulusParams)
    method = traits.Str(mandatory=True, desc="name of the reconstruction method in the metrics table")


class Evaluate(RecordingInterface):
    """The field's metrics and 2-way identification in pixel and feature space of one set of reconstructions."""

    input_spec = _EvaluateInputSpec
    output_spec = EvaluationOutputSpec

    def _run(self, runtime):
        i = self.inputs
        with np.load(i.reconstructions) as data:
            stim_ids, images = list(data["stim_ids"].astype(str)), data["images"]
        decoded = DecodedTest.load(i.decoded)
        resolver = resolver_for(i.bids_dir, load_params(StimulusParams, i.stimuli, "workflow.stimuli"))
        result = evaluate_generated({i.method: [images]}, lambda size: resolver.load_images(stim_ids, size),
                                    stim_ids=stim_ids, features={i.method: (decoded.decoded, decoded.true)},
                                    **evaluation_options(i))
        per_item = result.per_item.drop(columns=["variant", "sample"])  # one sample: one row per stimulus
        self._results.update(write_evaluation(Path(runtime.cwd), result, per_item))


__all__ = ["Decode", "Evaluate", "EvaluationInputSpec", "EvaluationOutputSpec", "ImageFeatures", "Reconstruct", "Rois",
           "evaluation_options", "write_evaluation"]
