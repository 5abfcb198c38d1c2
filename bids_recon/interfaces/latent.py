"""Interfaces of the latent-vector generator: the stimuli's latents, the union of ROIs, generation, evaluation."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits

from bids_recon.decoding import DecodedTest
from bids_recon.design.table import read_trials
from bids_recon.evaluate import evaluate_generated
from bids_recon.evaluate.latent import add_latent_metrics
from bids_recon.evaluate.variants import standardise_features
from bids_recon.features import resolver_for
from bids_recon.features.params import StimulusParams
from bids_recon.generate.latent import LatentParams, generate_images, load_recorded, stimulus_latents
from bids_recon.interfaces.base import RecordingInterface, load_params, params_trait
from bids_recon.interfaces.stages import Evaluate, EvaluationOutputSpec, evaluation_options, write_evaluation
from bids_recon.invariants import check_features, check_finite
from bids_recon.io import atomic_write, save_npz, write_json
from bids_recon.rois import roi_union

_PREFIX = "workflow.generate.latent"


class _GeneratorInputSpec(BaseInterfaceInputSpec):
    """Inputs of the nodes that load the generator: settings, identity (checked), device."""

    bids_dir = traits.Str(mandatory=True, desc="the raw dataset (relative generator and latents paths are in it)")
    params = params_trait(LatentParams)
    identity = traits.Dict(mandatory=True, desc="the generator's identity: in the node's hash, checked on loading")
    device = traits.Enum("cpu", "cuda", usedefault=True)


class _LatentTargetsInputSpec(_GeneratorInputSpec):
    trials = File(exists=True, mandatory=True)
    stimuli = params_trait(StimulusParams)  # where the images are (latents are estimated from them)


class _LatentTargetsOutputSpec(TraitedSpec):
    features = File(exists=True, desc="stim_ids, features (the latents), source (.npz); targets.json beside it")
    provenance = File(exists=True, desc="JSON: the table's sha256, how missing latents were estimated, losses")


class LatentTargets(RecordingInterface):
    """Each stimulus's latent vector: from the latents table, or estimated (inversion, encoder)."""

    input_spec = _LatentTargetsInputSpec
    output_spec = _LatentTargetsOutputSpec

    def _run(self, runtime):
        i = self.inputs
        params = load_params(LatentParams, i.params, _PREFIX)
        resolver = resolver_for(i.bids_dir, load_params(StimulusParams, i.stimuli, "workflow.stimuli"))
        stim_ids = read_trials(i.trials)["stim_id"].astype(str).unique().tolist()
        found = stimulus_latents(params, stim_ids, i.bids_dir, resolver.load_images, i.device, dict(i.identity))
        cwd = Path(runtime.cwd)
        check_features(found.stim_ids, found.latents, "latent targets", cwd / "targets.npz")
        self._results["features"] = str(save_npz(cwd / "targets.npz", stim_ids=found.stim_ids,
                                                 features=found.latents, source=found.source))
        self._results["provenance"] = str(write_json(cwd / "targets.json", {**dict(i.identity), **found.provenance}))


class _UnionRoiInputSpec(BaseInterfaceInputSpec):
    roi_files = traits.Dict(traits.Str, File(exists=True), mandatory=True, desc="ROI name -> mask")
    rois = traits.List(traits.Str, mandatory=True, minlen=1, desc="the ROIs to join")
    label = traits.Str(mandatory=True, desc="name of the joined ROI")


class _UnionRoiOutputSpec(TraitedSpec):
    roi_files = traits.Dict(traits.Str, File(exists=True), desc="label -> the union's mask")


class UnionRoi(RecordingInterface):
    """One mask of the voxels of several ROIs (by default every visual ROI: all visual voxels)."""

    input_spec = _UnionRoiInputSpec
    output_spec = _UnionRoiOutputSpec

    def _run(self, runtime):
        from bids_recon.errors import UsageError

        i = self.inputs
        unknown = [r for r in i.rois if r not in i.roi_files]
        if unknown:
            raise UsageError(f"ROIs {unknown} are not among the ROIs ({', '.join(i.roi_files)})")
        img = roi_union([nib.load(i.roi_files[r]) for r in i.rois])
        out = atomic_write(Path(runtime.cwd) / f"roi-{i.label}.nii.gz", lambda tmp: nib.save(img, tmp))
        self._results["roi_files"] = {i.label: str(out)}


class _GenerateInputSpec(_GeneratorInputSpec):
    decoded = File(exists=True, mandatory=True, desc="decoded and true latents of the test stimuli (.npz)")


class _GenerateOutputSpec(TraitedSpec):
    reconstructions = File(exists=True, desc=".npz with stim_ids, n_trials, images (n, H, W, 3) in [0, 1]")


class GenerateFromLatents(RecordingInterface):
    """The reconstructions: the decoded latents through the generator."""

    input_spec = _GenerateInputSpec
    output_spec = _GenerateOutputSpec

    def _run(self, runtime):
        i = self.inputs
        params = load_params(LatentParams, i.params, _PREFIX)
        decoded = DecodedTest.load(i.decoded)
        generator = load_recorded(params.generator, dict(i.identity), i.bids_dir, i.device)
        images = generate_images(generator, decoded.decoded, params.output_range, params.batch_size, params.progress,
                                 params.output_size)
        check_finite(images, "generated images", Path(runtime.cwd) / "reconstructions.npz")
        out = save_npz(Path(runtime.cwd) / "reconstructions.npz", stim_ids=decoded.stim_ids,
                       n_trials=decoded.n_trials, images=images)
        self._results["reconstructions"] = str(out)


class _EvaluateLatentInputSpec(Evaluate.input_spec):
    features = File(exists=True, mandatory=True, desc="every stimulus's latent (training statistics)")
    trials = File(exists=True, mandatory=True)


class EvaluateLatent(RecordingInterface):
    """The field's metrics and identification of the reconstructions, plus the paper's latent similarity."""

    input_spec = _EvaluateLatentInputSpec
    output_spec = EvaluationOutputSpec

    def _run(self, runtime):
        i = self.inputs
        with np.load(i.reconstructions) as data:
            stim_ids, images = list(data["stim_ids"].astype(str)), data["images"]
        decoded = DecodedTest.load(i.decoded)
        with np.load(i.features) as data:
            all_ids, latents = data["stim_ids"].astype(str), data["features"]
        trials = read_trials(i.trials)
        train_ids = set(trials.loc[trials["split"] == "train", "stim_id"].astype(str))
        # identification in latent space on latents z-scored with the training stimuli's statistics (a w-space's
        # shared mean would otherwise dominate the correlations); the paper's latent similarity on raw latents
        standardised = standardise_features(decoded.decoded, decoded.true, all_ids, latents, train_ids)
        resolver = resolver_for(i.bids_dir, load_params(StimulusParams, i.stimuli, "workflow.stimuli"))
        result = evaluate_generated({i.method: [images]}, lambda size: resolver.load_images(stim_ids, size),
                                    stim_ids=stim_ids, features={i.method: standardised}, **evaluation_options(i))
        result = add_latent_metrics(result, decoded.decoded, decoded.true, i.method)
        per_item = result.per_item.drop(columns=["variant", "sample"])  # one sample: one row per stimulus
        self._results.update(write_evaluation(Path(runtime.cwd), result, per_item))


__all__ = ["EvaluateLatent", "GenerateFromLatents", "LatentTargets", "UnionRoi"]
