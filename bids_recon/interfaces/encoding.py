"""Interfaces of the encoding stage: z_c features, the voxelwise encoding models, and writing their maps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits

from bids_recon.decoding.params import EncodingParams
from bids_recon.glm.runs import read_betas
from bids_recon.interfaces.base import RecordingInterface, load_params, params_trait
from bids_recon.io import atomic_write, npz_array_mapped, read_tsv, save_npz, write_json, write_tsv


class _StimulusBottleneckInputSpec(BaseInterfaceInputSpec):
    z_features = File(exists=True, mandatory=True, desc="stim_ids, features (n, C*h*w), shape")
    c_features = File(exists=True, mandatory=True, desc="stim_ids, features (n, L*D), shape")
    model_folder = traits.Str(mandatory=True, desc="resolved diffusers folder")
    model_identity = traits.Dict(mandatory=True, desc="ModelIdentity.to_sidecar() (part of the node's hash)")
    cache_dir = traits.Str(mandatory=True, desc="feature cache folder")
    levels = traits.List(traits.Float, mandatory=True, desc="noise levels in (0, 1)")
    seed = traits.Int(mandatory=True, desc="seed of the noise")
    batch_size = traits.Int(8, usedefault=True)
    progress = traits.Bool(False, usedefault=True)
    device = traits.Enum("cpu", "cuda", usedefault=True)


class _StimulusBottleneckOutputSpec(TraitedSpec):
    feature_files = traits.List(File(exists=True), desc="one .npz (stim_ids, features, shape) per level, in order")


class StimulusBottleneck(RecordingInterface):
    """z_c: the U-Net bottleneck features of every stimulus's z+c at each noise level (cached)."""

    input_spec = _StimulusBottleneckInputSpec
    output_spec = _StimulusBottleneckOutputSpec

    def _run(self, runtime):
        from bids_recon.features.bottleneck import bottleneck_features, space_name
        from bids_recon.features.cache import FeatureCache
        from bids_recon.generate.models import load_components

        i = self.inputs
        with np.load(i.z_features) as zf, np.load(i.c_features) as cf:
            stim_ids = zf["stim_ids"].astype(str)
            if list(stim_ids) != list(cf["stim_ids"].astype(str)):
                from bids_recon.errors import BadDataError

                raise BadDataError("z and c features list different stimuli", i.c_features)
            z = zf["features"].reshape(-1, *(int(v) for v in zf["shape"][1:]))
            c = cf["features"].reshape(-1, *(int(v) for v in cf["shape"][1:]))
        components = load_components(Path(i.model_folder), i.device, ("unet", "scheduler"))
        cache = FeatureCache(Path(i.cache_dir), f"{i.model_identity['ModelKey']}-{i.device}")
        features = bottleneck_features(components["unet"], components["scheduler"], z, c, list(i.levels), i.seed,
                                       cache, i.batch_size, i.progress)
        cwd = Path(runtime.cwd)
        files = []
        for level in i.levels:
            name = space_name(level)
            array = features[name]
            files.append(str(save_npz(cwd / f"{name}_features.npz", stim_ids=stim_ids, features=array,
                                      shape=np.asarray(array.shape))))
        self._results["feature_files"] = files


class _EncodingModelsInputSpec(BaseInterfaceInputSpec):
    betas = File(exists=True, mandatory=True, desc="z-scored betas .npy (n_trials, n_brain_voxels)")
    trials = File(exists=True, mandatory=True)
    mask_file = File(exists=True, mandatory=True, desc="subject brain mask")
    roi_files = traits.Dict(traits.Str, File(exists=True), mandatory=True)
    features = traits.Dict(traits.Str, File(exists=True), mandatory=True,
                           desc="feature space -> .npz (stim_ids, features)")
    spaces = traits.List(traits.Str, mandatory=True, desc="feature spaces to model, in order")
    partition = traits.List(traits.Str, desc="spaces of the joint model (variance partitioning)")
    params = params_trait(EncodingParams)
    seed = traits.Int(mandatory=True, desc="seed of the permutation null")
    device = traits.Enum("cpu", "cuda", usedefault=True)


class _EncodingModelsOutputSpec(TraitedSpec):
    maps = traits.Dict(traits.Str, File(exists=True), desc="'model|stat' -> NIfTI in the BOLD grid")
    summary = File(exists=True, desc="ROI summary (TSV)")
    info = File(exists=True, desc="provenance of the fit (JSON)")


class EncodingModels(RecordingInterface):
    """Voxelwise encoding models from each feature space (:func:`bids_recon.decoding.encoding.encoding_analysis`)."""

    input_spec = _EncodingModelsInputSpec
    output_spec = _EncodingModelsOutputSpec

    def _run(self, runtime):
        from bids_recon.decoding.encoding import encoding_analysis, encoding_voxels, to_volume
        from bids_recon.errors import BadDataError

        i = self.inputs
        params = load_params(EncodingParams, i.params, "workflow.encoding")
        missing = [s for s in i.spaces if s not in i.features]
        if missing:
            raise BadDataError(f"no feature files for the encoding feature spaces {missing} (have: "
                               f"{', '.join(i.features)})")
        brain = nib.load(i.mask_file)
        voxel_indices, rois = encoding_voxels(brain, {k: nib.load(v) for k, v in i.roi_files.items()}, params.mask)
        cwd = Path(runtime.cwd)
        features = {}
        for space in i.spaces:  # memory-mapped: NSD's z, c and three z_c spaces are 6.4 GB as arrays
            with np.load(i.features[space]) as data:
                stim_ids = data["stim_ids"].astype(str)
            features[space] = (stim_ids, npz_array_mapped(i.features[space], "features",
                                                          cwd / "features" / f"{space}.npy"))
        betas, trials = read_betas(i.betas, i.trials, i.mask_file)
        result = encoding_analysis(
            betas, trials, voxel_indices, features, params, rois=rois,
            partition=list(i.partition), seed=i.seed, device=i.device,
            scratch_dir=cwd / "scratch" if params.mask == "brain" else None)
        del features
        shutil.rmtree(cwd / "features", ignore_errors=True)  # copies of the inputs, no longer read
        inside = np.asarray(brain.dataobj) > 0
        maps = {}
        for model, stat, values in result.statmaps():
            img = nib.Nifti1Image(to_volume(values, inside, result.voxel_indices), brain.affine)
            img.header.set_data_dtype(np.float32)
            maps[f"{model}|{stat}"] = str(atomic_write(cwd / f"{model.replace('+', 'and')}_{stat}.nii.gz",
                                                       lambda tmp, img=img: nib.save(img, tmp)))
        self._results["maps"] = maps
        self._results["summary"] = str(write_tsv(cwd / "summary.tsv", result.summary))
        self._results["info"] = str(write_json(cwd / "info.json", result.maps.info))


#: What each statistic of an encoding map is (the sidecars' ``Description``).
STAT_DESCRIPTIONS = {
    "r": "Pearson r between predicted and measured repeat-averaged betas of the held-out test stimuli",
    "p": "one-sided p value of r > 0 (see Null)",
    "q": "Benjamini-Hochberg q value of p, over the modelled voxels of this model",
    "uniquevariance": "unique variance: held-out R² of the joint model minus that of the joint model without this "
                      "feature space",
    "sharedvariance": "shared variance: held-out R² of each space alone, summed, minus that of the joint model",
}


class _WriteEncodingInputSpec(BaseInterfaceInputSpec):
    maps = traits.Dict(traits.Str, File(exists=True), mandatory=True)
    summary = File(exists=True, mandatory=True)
    info = File(exists=True, mandatory=True)
    output_dir = traits.Str(mandatory=True)
    names = traits.Dict(mandatory=True, desc="SubjectOutputs fields (subject, task, space, resolution)")
    descriptions = traits.Dict(traits.Str, traits.Str, desc="feature space -> what it is")
    sidecar = traits.Dict(desc="provenance common to every file (Sources, settings...)")


class _WriteEncodingOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True))


class WriteEncodingMaps(RecordingInterface):
    """Copy the encoding maps and ROI table to their derivative names, each with a JSON sidecar."""

    writes_outputs = True

    input_spec = _WriteEncodingInputSpec
    output_spec = _WriteEncodingOutputSpec

    def _run(self, runtime):
        import shutil

        from bids_recon.naming import SubjectOutputs, sidecar_path

        i = self.inputs
        names, root = SubjectOutputs(**i.names), Path(i.output_dir)
        info = json.loads(Path(i.info).read_text())
        common = {**dict(i.sidecar), **info}
        written = []
        for key, src in sorted(i.maps.items()):
            model, stat = key.split("|")
            spaces = model.split("+")
            out = root / names.encoding_map(model, stat)
            atomic_write(out, lambda tmp, src=src: shutil.copyfile(src, tmp))
            write_json(sidecar_path(out), {
                "Description": STAT_DESCRIPTIONS[stat], "Statistic": stat, "Model": model, "FeatureSpaces": spaces,
                "FeatureDescriptions": {s: i.descriptions.get(s, "") for s in spaces},
                "Outside": "NaN outside the modelled voxels", **common})
            written.append(str(out))
        table = root / names.encoding_summary()
        write_tsv(table, read_tsv(i.summary))
        write_json(sidecar_path(table), {
            "Description": "Encoding models per ROI: voxels, mean and median r on the test stimuli, fraction of "
                           "voxels with q < FDR, mean unique variance (spaces of the joint model)",
            "FeatureDescriptions": dict(i.descriptions), **common})
        self._results["out_files"] = [*written, str(table)]
