"""Interfaces of the latent-diffusion path: stimulus z/c features, generation, evaluation, writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits
from PIL import Image

from bids_recon.decoding import DecodedTest
from bids_recon.design.table import read_trials
from bids_recon.errors import BadDataError
from bids_recon.evaluate.variants import evaluate_generated, samples_from_index, standardise_features
from bids_recon.features import captions_for, resolver_for
from bids_recon.features.params import StimulusParams
from bids_recon.generate.diffusion import DiffusionParams
from bids_recon.interfaces.base import RecordingInterface, load_params, params_trait
from bids_recon.interfaces.stages import EvaluationInputSpec, EvaluationOutputSpec, evaluation_options, write_evaluation
from bids_recon.invariants import check_features, check_finite
from bids_recon.io import atomic_write, read_tsv, save_npz, write_tsv


class _StimulusLatentsInputSpec(BaseInterfaceInputSpec):
    trials = File(exists=True, mandatory=True)
    bids_dir = traits.Str(mandatory=True)
    stimuli = params_trait(StimulusParams)  # where the images and the captions are
    model_folder = traits.Str(mandatory=True, desc="resolved diffusers folder")
    model_identity = traits.Dict(mandatory=True, desc="ModelIdentity.to_sidecar() (part of the node's hash)")
    cache_dir = traits.Str(mandatory=True, desc="feature cache folder")
    params = params_trait(DiffusionParams)
    device = traits.Enum("cpu", "cuda", usedefault=True)


class _StimulusLatentsOutputSpec(TraitedSpec):
    z_features = File(exists=True, desc="stim_ids, features (n, C*h*w), shape")
    c_features = File(exists=True, desc="stim_ids, features (n, L*D), shape")
    uncond = File(exists=True, desc="empty-caption embedding .npy (L, D)")
    cache_stats = traits.Dict(desc="hits, misses, corrupted")


class StimulusLatents(RecordingInterface):
    """VAE latents z and caption embeddings c of every stimulus in the trial table (cached)."""

    input_spec = _StimulusLatentsInputSpec
    output_spec = _StimulusLatentsOutputSpec

    def _run(self, runtime):
        from bids_recon.features.cache import FeatureCache
        from bids_recon.features.latents import stimulus_features
        from bids_recon.generate.models import load_components

        i = self.inputs
        params = load_params(DiffusionParams, i.params, "workflow.generate.diffusion")
        stim_ids = sorted(read_trials(i.trials)["stim_id"].astype(str).unique())
        resolver = resolver_for(i.bids_dir, load_params(StimulusParams, i.stimuli, "workflow.stimuli"))
        captions = captions_for(resolver, stim_ids)
        components = load_components(Path(i.model_folder), i.device, ("vae", "text_encoder", "tokenizer"))
        key = f"{i.model_identity['ModelKey']}-{i.device}"  # fp16 on CUDA and fp32 on CPU differ slightly
        cache = FeatureCache(Path(i.cache_dir), key)
        feats = stimulus_features(resolver, stim_ids, captions,
                                  components, cache, params.latent_image_size, params.batch_size, params.progress)
        cwd = Path(runtime.cwd)
        n = len(stim_ids)
        check_features(feats.stim_ids, feats.z, "VAE latents z", cwd / "z_features.npz")
        check_features(feats.stim_ids, feats.c, "caption embeddings c", cwd / "c_features.npz")
        self._results["z_features"] = str(save_npz(cwd / "z_features.npz", stim_ids=feats.stim_ids,
                                                   features=feats.z.reshape(n, -1), shape=np.asarray(feats.z.shape)))
        self._results["c_features"] = str(save_npz(cwd / "c_features.npz", stim_ids=feats.stim_ids,
                                                   features=feats.c.reshape(n, -1), shape=np.asarray(feats.c.shape)))
        self._results["uncond"] = str(atomic_write(cwd / "uncond.npy", lambda tmp: np.save(tmp, feats.uncond)))
        self._results["cache_stats"] = feats.cache_stats


class _DiffusionReconstructInputSpec(BaseInterfaceInputSpec):
    decoded_z = File(exists=True, mandatory=True, desc="DecodedTest .npz of z")
    decoded_c = File(exists=True, mandatory=True, desc="DecodedTest .npz of c")
    z_features = File(exists=True, mandatory=True, desc="to read the latent shape")
    c_features = File(exists=True, mandatory=True, desc="to read the embedding shape")
    uncond = File(exists=True, mandatory=True)
    model_folder = traits.Str(mandatory=True)
    model_identity = traits.Dict(mandatory=True)
    params = params_trait(DiffusionParams)
    device = traits.Enum("cpu", "cuda", usedefault=True)


class _DiffusionReconstructOutputSpec(TraitedSpec):
    index = File(exists=True, desc="TSV: stimulus, trials, variant, sample, seed, file (PNG in the node folder)")


class DiffusionReconstruct(RecordingInterface):
    """z only, c only and z+c (img2img) reconstructions of the test stimuli, written as PNGs."""

    input_spec = _DiffusionReconstructInputSpec
    output_spec = _DiffusionReconstructOutputSpec

    def _run(self, runtime):
        from bids_recon.generate.diffusion import DiffusionGenerator
        from bids_recon.generate.models import load_components

        i = self.inputs
        dz, dc = DecodedTest.load(i.decoded_z), DecodedTest.load(i.decoded_c)
        if list(dz.stim_ids) != list(dc.stim_ids):
            raise BadDataError("z and c decoders decoded different test stimuli", i.decoded_c)
        with np.load(i.z_features) as data:
            z_shape = tuple(int(v) for v in data["shape"][1:])
        with np.load(i.c_features) as data:
            c_shape = tuple(int(v) for v in data["shape"][1:])
        z = dz.decoded.reshape(len(dz.decoded), *z_shape)
        c = dc.decoded.reshape(len(dc.decoded), *c_shape)
        settings = load_params(DiffusionParams, i.params, "workflow.generate.diffusion")
        generator = DiffusionGenerator(load_components(Path(i.model_folder), i.device), settings)
        cwd = Path(runtime.cwd)
        folder = cwd / "images"
        folder.mkdir(exist_ok=True)
        bar = None
        if settings.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=generator.n_images(len(z)), desc="Reconstructions")
        rows = []
        for item in generator.generate(z, c, np.load(i.uncond), on_batch=bar.update if bar else None):
            path = folder / f"{item.index:05d}_{item.variant}_{item.sample}.png"
            check_finite(item.image, f"reconstruction ({item.variant}, sample {item.sample})", path)
            pixels = (np.clip(item.image, 0, 1) * 255).round().astype(np.uint8)
            atomic_write(path, lambda tmp, pixels=pixels: Image.fromarray(pixels).save(tmp, format="PNG"))
            rows.append({"stimulus": str(dz.stim_ids[item.index]), "trials": int(dz.n_trials[item.index]),
                         "variant": item.variant, "sample": item.sample,
                         "seed": "n/a" if item.seed is None else item.seed, "file": str(path)})
        if bar is not None:
            bar.close()
        self._results["index"] = str(write_tsv(cwd / "index.tsv", pd.DataFrame(rows)))


def _load_png(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), np.uint8)


class _EvaluateVariantsInputSpec(EvaluationInputSpec):
    index = File(exists=True, mandatory=True)
    decoded_z = File(exists=True, mandatory=True)
    decoded_c = File(exists=True, mandatory=True)
    z_features = File(exists=True, mandatory=True, desc="all stimuli's z (training statistics)")
    c_features = File(exists=True, mandatory=True, desc="all stimuli's c (training statistics)")
    trials = File(exists=True, mandatory=True)
    bids_dir = traits.Str(mandatory=True)
    stimuli = params_trait(StimulusParams)


class EvaluateVariants(RecordingInterface):
    """The field's metrics of each variant, every sample evaluated (mean or best of n per the settings), and
    2-way identification in pixel space and, for z and c, in the decoded feature space."""

    input_spec = _EvaluateVariantsInputSpec
    output_spec = EvaluationOutputSpec

    def _run(self, runtime):
        i = self.inputs
        index = read_tsv(i.index, dtype={"stimulus": str})
        trials = read_trials(i.trials)
        train_ids = set(trials.loc[trials["split"] == "train", "stim_id"].astype(str))
        standard = {}
        spaces = (("z", i.decoded_z, i.z_features), ("c", i.decoded_c, i.c_features))
        for variant, decoded_file, features_file in spaces:
            decoded = DecodedTest.load(decoded_file)
            with np.load(features_file) as data:
                standard[variant] = standardise_features(decoded.decoded, decoded.true, data["stim_ids"].astype(str),
                                                         data["features"], train_ids)
        order = [str(s) for s in DecodedTest.load(i.decoded_z).stim_ids]
        resolver = resolver_for(i.bids_dir, load_params(StimulusParams, i.stimuli, "workflow.stimuli"))
        result = evaluate_generated(samples_from_index(index, order, _load_png),
                                    lambda size: resolver.load_images(order, size), stim_ids=order,
                                    features=standard, **evaluation_options(i))
        self._results.update(write_evaluation(Path(runtime.cwd), result))


__all__ = ["DiffusionReconstruct", "EvaluateVariants", "StimulusLatents"]
