"""Interfaces of the latent-diffusion path: stimulus z/c features, generation, evaluation, writing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits
from PIL import Image

from bids_recon.decoding import DecodedTest
from bids_recon.evaluate import evaluate_reconstructions
from bids_recon.features import StimulusResolver, load_captions
from bids_recon.glm.trials import read_trials
from bids_recon.interfaces.base import RecordingInterface
from bids_recon.io import atomic_write, read_tsv, save_npz, write_json, write_tsv


class _StimulusLatentsInputSpec(BaseInterfaceInputSpec):
    trials = File(exists=True, mandatory=True)
    bids_dir = traits.Str(mandatory=True)
    stimuli_folder = traits.Str("stimuli", usedefault=True)
    captions_file = traits.Str(mandatory=True, desc="captions table (stim_file, caption)")
    model_folder = traits.Str(mandatory=True, desc="resolved diffusers folder")
    model_identity = traits.Dict(mandatory=True, desc="ModelIdentity.to_sidecar() (part of the node's hash)")
    cache_dir = traits.Str(mandatory=True, desc="feature cache folder")
    image_size = traits.Int(320, usedefault=True)
    batch_size = traits.Int(8, usedefault=True)
    device = traits.Enum("cpu", "cuda", usedefault=True)
    progress = traits.Bool(False, usedefault=True)


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
        stim_ids = sorted(read_trials(i.trials)["stim_id"].astype(str).unique())
        captions = load_captions(Path(i.captions_file), stim_ids)
        components = load_components(Path(i.model_folder), i.device, ("vae", "text_encoder", "tokenizer"))
        key = f"{i.model_identity['ModelKey']}-{i.device}"  # fp16 on CUDA and fp32 on CPU differ slightly
        cache = FeatureCache(Path(i.cache_dir), key)
        feats = stimulus_features(StimulusResolver(Path(i.bids_dir), i.stimuli_folder), stim_ids, captions,
                                  components, cache, i.image_size, i.batch_size, i.progress)
        cwd = Path(runtime.cwd)
        n = len(stim_ids)
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
    settings = traits.Dict(mandatory=True, desc="DiffusionSettings fields")
    device = traits.Enum("cpu", "cuda", usedefault=True)


class _DiffusionReconstructOutputSpec(TraitedSpec):
    index = File(exists=True, desc="TSV: stimulus, trials, variant, sample, seed, file (PNG in the node folder)")


class DiffusionReconstruct(RecordingInterface):
    """z only, c only and z+c (img2img) reconstructions of the test stimuli, written as PNGs."""

    input_spec = _DiffusionReconstructInputSpec
    output_spec = _DiffusionReconstructOutputSpec

    def _run(self, runtime):
        from bids_recon.generate.diffusion import DiffusionGenerator, DiffusionSettings
        from bids_recon.generate.models import load_components

        i = self.inputs
        dz, dc = DecodedTest.load(i.decoded_z), DecodedTest.load(i.decoded_c)
        if list(dz.stim_ids) != list(dc.stim_ids):
            raise ValueError("z and c decoders decoded different test stimuli")
        with np.load(i.z_features) as data:
            z_shape = tuple(int(v) for v in data["shape"][1:])
        with np.load(i.c_features) as data:
            c_shape = tuple(int(v) for v in data["shape"][1:])
        z = dz.decoded.reshape(len(dz.decoded), *z_shape)
        c = dc.decoded.reshape(len(dc.decoded), *c_shape)
        settings = dict(i.settings)
        settings["variants"] = tuple(settings.get("variants", ()))
        settings = DiffusionSettings(**settings)
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
        return np.asarray(img.convert("RGB"), np.float32) / 255.0


def standardise_features(decoded: DecodedTest, features_file: str, trials_file: str) -> tuple[np.ndarray, np.ndarray]:
    """Decoded and true test features z-scored per dimension with the training stimuli's mean and sd.

    Constant dimensions are dropped. Correlating raw z or c vectors mostly measures the part every stimulus
    shares (over 99% of a random model's and much of a real model's variance), not the stimulus.

    Returns
    -------
    decoded, true : ndarray, shape (n_test, n_kept)
    """
    trials = read_trials(trials_file)
    train = set(trials.loc[trials["split"] == "train", "stim_id"].astype(str))
    with np.load(features_file) as data:
        ids, feats = data["stim_ids"].astype(str), data["features"]
    rows = feats[np.array([s in train for s in ids])]
    mean, sd = rows.mean(axis=0), rows.std(axis=0)
    keep = sd > 1e-6 * max(float(sd.max(initial=0.0)), 1e-30)
    return ((decoded.decoded[:, keep] - mean[keep]) / sd[keep], (decoded.true[:, keep] - mean[keep]) / sd[keep])


class _EvaluateVariantsInputSpec(BaseInterfaceInputSpec):
    index = File(exists=True, mandatory=True)
    decoded_z = File(exists=True, mandatory=True)
    decoded_c = File(exists=True, mandatory=True)
    z_features = File(exists=True, mandatory=True, desc="all stimuli's z (training statistics)")
    c_features = File(exists=True, mandatory=True, desc="all stimuli's c (training statistics)")
    trials = File(exists=True, mandatory=True)
    bids_dir = traits.Str(mandatory=True)
    stimuli_folder = traits.Str("stimuli", usedefault=True)


class _EvaluateVariantsOutputSpec(TraitedSpec):
    metrics = File(exists=True, desc="one row per (metric, variant), averaged over samples")
    per_item = File(exists=True, desc="one row per (stimulus, variant, sample)")


class EvaluateVariants(RecordingInterface):
    """Metrics of each variant (averaged over samples); decoded-feature identification for z and c."""

    input_spec = _EvaluateVariantsInputSpec
    output_spec = _EvaluateVariantsOutputSpec

    def _run(self, runtime):
        i = self.inputs
        index = read_tsv(i.index, dtype={"stimulus": str})
        decoded = {"z": DecodedTest.load(i.decoded_z), "c": DecodedTest.load(i.decoded_c)}
        standard = {"z": standardise_features(decoded["z"], i.z_features, i.trials),
                    "c": standardise_features(decoded["c"], i.c_features, i.trials)}
        resolver = StimulusResolver(Path(i.bids_dir), i.stimuli_folder)
        summaries, items = [], []
        truth = None
        for (variant, sample), rows in index.groupby(["variant", "sample"], sort=False):
            order = {s: k for k, s in enumerate(decoded["z"].stim_ids.astype(str))}
            rows = rows.sort_values("stimulus", key=lambda s: s.map(order))
            images = np.stack([_load_png(f) for f in rows["file"]])
            if truth is None or truth.shape[1] != images.shape[1]:
                truth = resolver.load_images(list(rows["stimulus"]), images.shape[1])
            dec_feats, true_feats = standard.get(str(variant), (None, None))
            summary, per_item = evaluate_reconstructions(images, truth, dec_feats, true_feats, str(variant))
            summary["sample"] = sample
            summaries.append(summary)
            per_item.insert(0, "stimulus", list(rows["stimulus"]))
            per_item.insert(1, "variant", variant)
            per_item.insert(2, "sample", sample)
            items.append(per_item)
        table = pd.concat(summaries, ignore_index=True)
        metrics = (table.groupby(["method", "metric"], sort=False)
                   .agg(value=("value", "mean"), chance=("chance", "mean"), kind=("kind", "first"), n=("n", "first"),
                        samples=("sample", "size"))
                   .reset_index()[["metric", "value", "chance", "kind", "method", "n", "samples"]])
        cwd = Path(runtime.cwd)
        self._results["metrics"] = str(write_tsv(cwd / "metrics.tsv", metrics))
        self._results["per_item"] = str(write_tsv(cwd / "per_item.tsv", pd.concat(items, ignore_index=True)))


class _WriteDiffusionInputSpec(BaseInterfaceInputSpec):
    index = File(exists=True, mandatory=True)
    per_item = File(exists=True, mandatory=True)
    output_dir = traits.Str(mandatory=True)
    subject = traits.Str(mandatory=True)
    task = traits.Str(mandatory=True)
    space = traits.Str(mandatory=True)
    resolution = traits.Either(None, traits.Str, default=None, usedefault=True)
    generator = traits.Str("diffusion", usedefault=True)
    sidecar = traits.Dict()


class _WriteDiffusionOutputSpec(TraitedSpec):
    index_file = File(exists=True)


class WriteDiffusionReconstructions(RecordingInterface):
    """Copy the generated PNGs to their derivative names and write the TSV index (+ JSON sidecar)."""

    writes_outputs = True

    input_spec = _WriteDiffusionInputSpec
    output_spec = _WriteDiffusionOutputSpec

    def _run(self, runtime):
        from bids_recon.bids.derivatives import SubjectOutputs

        i = self.inputs
        names = SubjectOutputs(i.subject, i.task, i.space, i.resolution)
        root = Path(i.output_dir)
        index = read_tsv(i.index, dtype={"stimulus": str, "variant": str})
        files = []
        for row in index.itertuples():
            rel = names.recon_variant_image(row.stimulus, row.variant, int(row.sample))
            atomic_write(root / rel, lambda tmp, src=row.file: shutil.copyfile(src, tmp))
            files.append(rel.as_posix())
        index["file"] = files
        metrics = read_tsv(i.per_item, dtype={"stimulus": str, "variant": str})
        out = root / names.recon_index(i.generator)
        write_tsv(out, index.merge(metrics, on=["stimulus", "variant", "sample"], how="left"))
        if i.sidecar:
            write_json(out.with_suffix(".json"), dict(i.sidecar))
        self._results["index_file"] = str(out)


__all__ = ["DiffusionReconstruct", "EvaluateVariants", "StimulusLatents", "WriteDiffusionReconstructions"]
