"""Interfaces of ``--decoders-from``: an earlier run's decoder applied to this run's betas, and its PCA basis.

Thin wrappers of :mod:`bids_recon.decoding.reuse`; a :class:`ReuseDecoder` node has the outputs of a
:class:`~bids_recon.interfaces.stages.Decode` node (``decoder`` with its JSON beside it, ``decoded``) plus the
decoded features' sidecar (``decoded_sidecar``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits

from bids_recon.decoding import RidgeDecoder, reuse
from bids_recon.design.table import read_trials
from bids_recon.errors import BadDataError, UsageError
from bids_recon.features import ImageBasis, resolver_for
from bids_recon.features.params import StimulusParams
from bids_recon.glm.runs import read_betas
from bids_recon.interfaces.base import RecordingInterface, load_params, params_trait
from bids_recon.invariants import check_features
from bids_recon.io import atomic_write, save_npz, write_json
from bids_recon.rois import roi_columns

LOGGER = logging.getLogger("bids_recon")


class _ReuseDecoderInputSpec(BaseInterfaceInputSpec):
    betas = File(exists=True, mandatory=True, desc="z-scored betas .npy (n_trials, n_brain_voxels)")
    trials = File(exists=True, mandatory=True)
    mask_file = File(exists=True, mandatory=True, desc="this run's brain mask")
    roi_files = traits.Dict(traits.Str, File(exists=True), mandatory=True)
    roi = traits.Str(mandatory=True, desc="which ROI feeds the decoder")
    features = File(exists=True, mandatory=True, desc="features .npz (stim_ids, features): the true values")
    target = traits.Str(mandatory=True, desc="name of the decoded feature space")
    decoders_from = traits.Str(mandatory=True, desc="the earlier run's output folder")
    subject = traits.Str(mandatory=True)
    task = traits.Str(mandatory=True)
    wanted = traits.List(traits.Tuple(traits.Str, traits.Str), mandatory=True,
                         desc="(roi, target) of every decoder this run's generator fits")
    identity = traits.Dict(desc="the feature model's sidecar identity (empty: none to compare)")
    this_run = traits.Str(mandatory=True, desc="this run's output folder (messages)")
    stimulus_ids = traits.Str("", usedefault=True, desc="the resolver kind naming this run's stimulus ids")


class _ReuseDecoderOutputSpec(TraitedSpec):
    decoder = File(exists=True, desc="the earlier decoder (.npz, its .json beside it, naming its source)")
    decoded = File(exists=True, desc="decoded and true features of the decoded stimuli (.npz)")
    decoded_sidecar = File(exists=True, desc="JSON: the source decoder, the stimuli left out")


class ReuseDecoder(RecordingInterface):
    """Apply an earlier run's decoder (same participant, ROI, target) to this run's repeat-averaged betas."""

    input_spec = _ReuseDecoderInputSpec
    output_spec = _ReuseDecoderOutputSpec

    def _run(self, runtime):
        i = self.inputs
        this = f"this run ({i.this_run})"
        source = reuse.find_source_decoders(i.decoders_from, i.subject, i.task, [tuple(w) for w in i.wanted],
                                            this)[(i.roi, i.target)]
        sidecar = reuse.read_sidecar(source)
        reuse.check_same_model(sidecar, i.target, dict(i.identity or {}), str(source), this)
        source_mask = reuse.source_brain_mask(i.decoders_from, i.subject)
        reuse.check_same_voxels(nib.load(source_mask), nib.load(i.mask_file), str(source_mask),
                                f"{this}'s brain mask")
        if i.roi not in i.roi_files:
            raise UsageError(f"decoder ROI '{i.roi}' is not one of the ROIs ({', '.join(i.roi_files)})")
        voxel_indices = roi_columns(nib.load(i.mask_file), nib.load(i.roi_files[i.roi]))
        decoder = RidgeDecoder.load(source)
        source_roi = reuse.source_roi_mask(i.decoders_from, i.subject, i.roi)
        reuse.check_same_roi(decoder, voxel_indices, str(source_roi or source), f"{this}'s ROI mask", i.roi)
        trials_file = reuse.source_trials(i.decoders_from, i.subject, source)
        trained, n_train = reuse.training_stimuli(trials_file)
        source_kind = sidecar.get(reuse.STIMULUS_IDS_KEY)
        if not reuse.same_stimulus_ids(source_kind, i.stimulus_ids):  # other images' numbers: nothing in common
            LOGGER.info("--decoders-from: the decoder was trained on stimulus ids of kind '%s', which name other "
                        "images than this run's ('%s'): no stimulus excluded as seen in training", source_kind,
                        i.stimulus_ids)
            trained = set()
        with np.load(i.features) as data:
            stim_ids, features = data["stim_ids"].astype(str), data["features"]
        check_features(stim_ids, features, f"'{i.target}' features", i.features)
        betas, trials = read_betas(i.betas, i.trials, i.mask_file)
        applied = reuse.apply_decoder(decoder, betas, trials, trained, stim_ids, features,
                                      f"the earlier run ({i.decoders_from})", this)
        LOGGER.info("--decoders-from: %s of sub-%s decodes %d stimuli; %d excluded as seen in training by %s",
                    Path(source).name, i.subject, len(applied.decoded.stim_ids), len(applied.excluded), source)
        record = {**reuse.source_record(source), "TrainingTrials": n_train,
                  "TrainingTable": str(Path(trials_file).absolute())}
        cwd = Path(runtime.cwd)
        out = atomic_write(cwd / "decoder.npz", lambda tmp: shutil.copyfile(source, tmp))
        write_json(cwd / "decoder.json", {**sidecar, "Refitted": False, "DecoderSource": record})
        self._results["decoder"] = str(out)
        self._results["decoded"] = str(applied.decoded.save(cwd / "decoded.npz"))
        self._results["decoded_sidecar"] = str(write_json(cwd / "decoded.json", {
            "DecoderSource": record, "Refitted": False, "DecodedStimuli": int(len(applied.decoded.stim_ids)),
            "ExcludedTrainingStimuli": len(applied.excluded),
            "Selection": "every stimulus of this run that was not a training stimulus of the decoder's run, "
                         "averaged over this run's presentations (this run's own split is not used)"}))


class _ReusedBasisInputSpec(BaseInterfaceInputSpec):
    trials = File(exists=True, mandatory=True)
    bids_dir = traits.Str(mandatory=True)
    stimuli = params_trait(StimulusParams)
    basis = File(exists=True, mandatory=True, desc="the earlier run's PCA basis (.npz)")
    image_size = traits.Int(mandatory=True, desc="this run's image size (must be the basis's)")


class _ReusedBasisOutputSpec(TraitedSpec):
    basis = File(exists=True, desc="the basis (.npz)")
    features = File(exists=True, desc="stim_ids and coefficients (.npz) of every stimulus of this run")


class ReusedBasisFeatures(RecordingInterface):
    """Every stimulus of this run encoded with the earlier run's PCA basis (the linear generator's targets)."""

    input_spec = _ReusedBasisInputSpec
    output_spec = _ReusedBasisOutputSpec

    def _run(self, runtime):
        i = self.inputs
        basis = ImageBasis.load(i.basis)
        if basis.image_shape[0] != i.image_size:
            raise BadDataError(f"--decoders-from: the PCA basis {i.basis} is of {basis.image_shape[0]} px images, this "
                               f"run's image size is {i.image_size} (--image-size)")
        resolver = resolver_for(i.bids_dir, load_params(StimulusParams, i.stimuli, "workflow.stimuli"))
        stim_ids = np.array(sorted(read_trials(i.trials)["stim_id"].astype(str).unique()))
        coefficients = basis.encode(resolver.load_images(list(stim_ids), i.image_size))
        cwd = Path(runtime.cwd)
        check_features(stim_ids, coefficients, "image PCA coefficients", cwd / "features.npz")
        self._results["basis"] = str(atomic_write(cwd / "basis.npz", lambda tmp: shutil.copyfile(i.basis, tmp)))
        self._results["features"] = str(save_npz(cwd / "features.npz", stim_ids=stim_ids, features=coefficients))


__all__ = ["ReuseDecoder", "ReusedBasisFeatures"]
