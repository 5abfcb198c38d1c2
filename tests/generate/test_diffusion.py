"""The latent-diffusion path (``--generator diffusion``) with a tiny random-weight SD model, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from bids_recon.io import read_tsv
from bids_recon.naming import SubjectOutputs
from tests.conftest import no_network_env, participant_files, run_cli, validator_errors
from tests.shared import shared

os.environ["HF_HUB_OFFLINE"] = "1"  # no test may reach the hub (run_cli passes the environment on)

#: Few steps and one sample keep the CLI test fast; the settings are exercised, not their paper values.
FAST = ["--latent-image-size", "8", "--diffusion-steps", "2", "--n-samples", "1", "--diffusion-batch-size", "8",
        "--no-progress"]


@pytest.fixture(scope="module")
def diffusion_run(concurrent_runs, tiny_dataset):
    """sub-01 of the concurrent runs below, as one participant's diffusion run: every CLI check is made on it
    (one end-to-end run fewer in the suite)."""
    subject = tiny_dataset.subjects[0]
    position = list(tiny_dataset.subjects).index(subject)
    return {"proc": SimpleNamespace(returncode=concurrent_runs["codes"][position],
                                    stderr=concurrent_runs["stderr"][position]),
            "out": concurrent_runs["out"],
            "names": SubjectOutputs(subject, tiny_dataset.task, "MNI152NLin2009cAsym", "2")}


@pytest.mark.slow
def test_diffusion_cli_writes_every_variant(diffusion_run, tiny_sd):
    proc, out, names = diffusion_run["proc"], diffusion_run["out"], diffusion_run["names"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = read_tsv(out / names.recon_index("diffusion"), dtype={"stimulus": str, "variant": str})
    assert set(index["variant"]) == {"z", "c", "zc"}
    assert index.groupby("variant").size().nunique() == 1  # every test stimulus in every variant
    assert all((out / f).is_file() for f in index["file"])
    assert set(index.loc[index["variant"] == "zc", "seed"].astype(int)) == {42}
    sidecar = json.loads((out / names.recon_index("diffusion")).with_suffix(".json").read_text())
    assert sidecar["Steps"] == 2 and sidecar["Strength"] == 0.8 and sidecar["GuidanceScale"] == 5.0
    weights = sidecar["ModelWeightsSHA256"]
    from bids_recon.generate.models import sha256_file

    assert weights["unet/diffusion_pytorch_model.safetensors"] == sha256_file(
        tiny_sd / "unet" / "diffusion_pytorch_model.safetensors")
    for roi, target in (("earlyvisual", "vaelatent"), ("highervisual", "textembedding")):
        decoder = json.loads((out / names.decoder(roi, target, ".json")).read_text())
        assert decoder["ModelWeightsSHA256"] == weights and decoder["ROI"] == roi
    assert json.loads((out / names.metrics("diffusion", ".json")).read_text())["ModelKey"] == sidecar["ModelKey"]


@pytest.mark.slow
def test_z_and_c_decoders_identify_test_stimuli(concurrent_runs, tiny_dataset):
    """Early visual -> z and higher visual -> c identify the test stimuli far above chance (50%).

    The simulator's early-visual voxels see the image through receptive fields (z follows the image at 8 px) and
    its higher-visual voxels carry the object category, which the captions name (c follows the words). The tiny
    dataset has 8 test stimuli (56 comparisons per participant, a standard error near 0.06), so the claim is made
    on the mean over both participants (112 comparisons, a standard error near 0.045): z 0.84 and c 0.70 with the
    GLM of 2026-12-07 before issue 22, z 0.79 and c 0.68 after it (its betas match the ground truth as well or
    better); one participant's c moved by 0.09 between the two. The bounds sit about three standard errors above
    chance.
    """
    assert concurrent_runs["codes"] == [0, 0], [e[-3000:] for e in concurrent_runs["stderr"]]
    ident = {}
    for subject in tiny_dataset.subjects:
        names = SubjectOutputs(subject, tiny_dataset.task, "MNI152NLin2009cAsym", "2")
        metrics = read_tsv(concurrent_runs["out"] / names.metrics("diffusion"))
        assert set(metrics["method"]) == {"z", "c", "zc"}
        ident[subject] = metrics[metrics["metric"] == "identification_features"].set_index("method")["value"]
    mean = {space: float(np.mean([values[space] for values in ident.values()])) for space in ("z", "c")}
    assert mean["z"] > 0.75, ident
    assert mean["c"] > 0.62, ident


@pytest.mark.slow
def test_report_shows_the_paper_figure_and_both_decoders(diffusion_run):
    out = diffusion_run["out"]
    html = (out / "sub-01.html").read_text()
    assert "earlyvisual -&gt; vaelatent" in html or "earlyvisual -> vaelatent" in html
    assert "highervisual" in html and "Takagi" in html
    import re

    sources = re.findall(r'src="([^"]+)"', html)
    assert any("reconstructions_grid" in s for s in sources)
    assert all((out / s).is_file() for s in sources)
    sheets = [s for s in sources if s.endswith("_thumbnails.jpg")]  # every test stimulus, paged
    assert sheets and "All test stimuli" in html and 'loading="lazy"' in html


@pytest.mark.slow
def test_encoding_maps_and_figure_by_default(diffusion_run):
    """With the diffusion generator the encoding models run unasked: maps of z, c and z_c with sidecars, the ROI
    table, and the report's encoding figure (the validator test below checks their names)."""
    out, names = diffusion_run["out"], diffusion_run["names"]
    assert diffusion_run["proc"].returncode == 0, diffusion_run["proc"].stderr[-3000:]
    mask = np.asarray(nib.load(out / names.brain_mask()).dataobj) > 0
    for model in ("z", "c", "zc25", "zc50", "zc75", "z+c"):
        for stat in ("r", "p", "q"):
            values = np.asarray(nib.load(out / names.encoding_map(model, stat)).dataobj)
            assert values.shape == mask.shape and np.isfinite(values).sum() > 100
            assert not np.isfinite(values[~mask]).any()
        sidecar = json.loads((out / names.encoding_map(model, "r", ".json")).read_text())
        assert sidecar["Model"] == model and sidecar["TestStimuli"] == 8 and sidecar["Sources"]
        assert sidecar["Settings"]["fdr"] == 0.05 and "Student t" in sidecar["Null"]
    for space in ("z", "c"):
        assert (out / names.encoding_map(space, "uniquevariance")).is_file()
    assert (out / names.encoding_map("z+c", "sharedvariance")).is_file()
    table = read_tsv(out / names.encoding_summary())
    assert set(table["roi"]) == {"earlyvisual", "highervisual"} and "zc50" in set(table["model"])
    html = (out / "sub-01.html").read_text()
    assert "Encoding models" in html and "desc-encoding_map.png" in html and "encodingrois_plot" in html


@pytest.mark.slow
def test_diffusion_output_passes_bids_validator(diffusion_run):
    code, errors = validator_errors(diffusion_run["out"])
    assert code == 0 and not errors, errors[:5]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["no-such-org/no-such-model", "/no/such/folder"])
def test_missing_model_exits_66_offline(tiny_dataset, tmp_path, model):
    os.environ["HF_HUB_OFFLINE"] = "1"
    env_home = tmp_path / "hf"
    env_home.mkdir()
    old = os.environ.get("HF_HOME")
    os.environ["HF_HOME"] = str(env_home)
    try:
        proc = run_cli([str(tiny_dataset.bids_dir), str(tmp_path / "out"), "participant", "-d",
                        f"fmriprep={tiny_dataset.fmriprep_dir}", "-w", str(tmp_path / "work"), "--participant-label",
                        "01", "--skip-bids-validation", "--generator", "diffusion", "--model", model],
                       tiny_dataset.templateflow_dir, timeout=300)
    finally:
        if old is None:
            os.environ.pop("HF_HOME", None)
        else:
            os.environ["HF_HOME"] = old
    assert proc.returncode == 66, proc.stderr[-3000:]
    assert "--model" in proc.stderr and "HF_HOME" in proc.stderr and "--allow-download" in proc.stderr


def test_linear_stays_the_default():
    from bids_recon.cli.parser import build_parser
    from bids_recon.cli.run import build_config
    from bids_recon.config import Config

    assert Config().workflow.generate.generator == "linear"
    parser = build_parser()
    assert build_config(parser.parse_args(["a", "b", "participant"]), parser).workflow.generate.generator == "linear"


def test_model_resolves_from_model_dir_by_id(tiny_sd, tmp_path):
    from bids_recon.errors import MissingInputError
    from bids_recon.generate.models import resolve_model

    (tmp_path / "models" / "org").mkdir(parents=True)
    (tmp_path / "models" / "org" / "tiny").symlink_to(tiny_sd, target_is_directory=True)
    cache = tmp_path / "hashes.json"
    by_id = resolve_model("org/tiny", str(tmp_path / "models"), hash_cache=cache)
    by_path = resolve_model(str(tiny_sd), hash_cache=cache)
    assert by_id.identity.weights_sha256 == by_path.identity.weights_sha256
    assert by_id.identity.key == by_path.identity.key and by_id.identity.model_id == "org/tiny"
    assert len(json.loads(cache.read_text())) == 3  # unet, vae, text encoder hashed once
    with pytest.raises(MissingInputError, match="--model-dir"):
        resolve_model("org/absent", str(tmp_path / "models"))


def test_generation_is_seeded_and_independent_of_batch_size(tiny_sd):
    from bids_recon.generate.diffusion import DiffusionGenerator, DiffusionParams
    from bids_recon.generate.models import load_components

    components = load_components(tiny_sd)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 4, 16, 16)).astype(np.float32)
    c = rng.standard_normal((2, 77, 32)).astype(np.float32)
    uncond = np.zeros((77, 32), np.float32)

    def run(batch_size: int) -> dict:
        settings = DiffusionParams(steps=2, n_samples=2, batch_size=batch_size, variants=["zc"], progress=False)
        return {(g.index, g.sample): g.image for g in DiffusionGenerator(components, settings).generate(z, c, uncond)}

    one, three = run(1), run(3)
    assert set(one) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for key in one:
        np.testing.assert_allclose(one[key], three[key], atol=1e-4)
    assert np.abs(one[(0, 0)] - one[(0, 1)]).max() > 1e-3  # different seeds, different samples


def test_container_model_folder_is_used_for_the_default_id(tiny_sd, tmp_path, monkeypatch):
    from bids_recon.generate.models import DIFFUSION_MODEL_ENV, find_model_folder

    baked = tmp_path / "opt" / "stable-diffusion-v1-4"
    baked.parent.mkdir()
    baked.symlink_to(tiny_sd, target_is_directory=True)
    monkeypatch.setenv(DIFFUSION_MODEL_ENV, str(baked))
    assert find_model_folder("CompVis/stable-diffusion-v1-4") == baked.resolve()


# --- reproducibility, seeds and a feature cache shared by concurrent participants (issue 5) ----------------------

def _participant_command(dataset, out, work, subject: str, cache, model, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bids_recon", str(dataset.bids_dir), str(out), "participant", "-d",
            f"fmriprep={dataset.fmriprep_dir}", "-w", str(work), "--participant-label", subject,
            "--skip-bids-validation", "--nprocs", "1", "--generator", "diffusion", "--model", str(model),
            "--feature-cache", str(cache), *FAST, *extra]


@pytest.fixture(scope="module")
def concurrent_runs(tiny_dataset, tiny_sd, tmp_path_factory):
    """Both participants at once (as an HPC array job), one output dir, one cold feature cache, seed 42.

    The network is disabled and HF_HUB_OFFLINE unset: the diffusion path must not try to reach the hub.
    """
    def build(root: Path) -> dict:
        env = no_network_env(root / "no_network", TEMPLATEFLOW_HOME=str(tiny_dataset.templateflow_dir))
        procs = [subprocess.Popen(_participant_command(tiny_dataset, root / "out", root / f"work-{s}", s,
                                                       root / "cache", tiny_sd),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for s in tiny_dataset.subjects]
        results = [p.communicate(timeout=900) for p in procs]
        return {"out": root / "out", "cache": root / "cache", "codes": [p.returncode for p in procs],
                "stderr": [r[1] for r in results]}

    return shared(tmp_path_factory, "diffusion_concurrent_runs", build)


@pytest.fixture(scope="module")
def other_seed_run(tiny_dataset, tiny_sd, concurrent_runs, tmp_path_factory):
    """sub-01 again, fresh work dir, the (now warm) shared feature cache, with --diffusion-seed 41 --n-samples 2:
    sample 1 uses seed 42 (the concurrent runs' only sample: it must be the same image, bit for bit), sample 0 seed
    41 (a new one)."""
    def build(root: Path) -> dict:
        env = {**os.environ, "TEMPLATEFLOW_HOME": str(tiny_dataset.templateflow_dir), "NIPYPE_NO_ET": "1"}
        proc = subprocess.run(_participant_command(tiny_dataset, root / "out", root / "work", "01",
                                                   concurrent_runs["cache"], tiny_sd, "--diffusion-seed", "41",
                                                   "--n-samples", "2"),
                              capture_output=True, text=True, env=env, timeout=900)
        return {"out": root / "out", "proc": proc}

    return shared(tmp_path_factory, "diffusion_other_seed_run", build)


#: Outputs that a run's sampled images feed (their index, metrics, figures, report), besides the images.
FED_BY_SAMPLES = ("desc-diffusion_", "reconstructions_grid", "_thumbnails", "metrics_plot", "sample-selection")


@pytest.mark.slow
def test_concurrent_participants_share_one_feature_cache(concurrent_runs, tiny_dataset):
    from bids_recon.features import load_captions
    from bids_recon.features.cache import FeatureCache

    assert concurrent_runs["codes"] == [0] * len(tiny_dataset.subjects), [e[-2000:] for e in concurrent_runs["stderr"]]
    entries = sorted(concurrent_runs["cache"].rglob("*.npz"))
    leftovers = [p for p in concurrent_runs["cache"].rglob(".*") if p.is_file()]
    assert not leftovers, leftovers  # no temporary file of an interrupted or raced write
    captions = load_captions(tiny_dataset.bids_dir / "stimuli" / "captions.tsv")
    by_space = {space: [p for p in entries if p.parent.parent.name == space] for space in ("z", "c")}
    assert len(by_space["z"]) == len(captions)  # each stimulus encoded into one entry, whoever wrote it
    distinct_caption_sets = {"\n".join(texts) for texts in captions.values()}  # c is keyed by the captions
    assert len(by_space["c"]) == len(distinct_caption_sets) + 1  # + the empty caption
    for path in entries:  # every entry reads back with its checksum
        cache = FeatureCache(path.parents[3], path.parents[2].name)
        assert cache.get(path.parent.parent.name, path.stem) is not None and cache.corrupted == 0, path
    # the true z of the test stimuli, read from that cache by two processes, are the same for both participants
    true = {}
    for subject in tiny_dataset.subjects:
        names = SubjectOutputs(subject, tiny_dataset.task, "MNI152NLin2009cAsym", "2")
        with np.load(concurrent_runs["out"] / names.features("earlyvisual", "vaelatent")) as data:
            true[subject] = dict(zip(data["stim_ids"].astype(str), data["true"], strict=True))
    shared = set.intersection(*(set(t) for t in true.values()))
    assert shared
    for stim in shared:
        np.testing.assert_array_equal(*(t[stim] for t in true.values()))


@pytest.mark.slow
def test_same_seed_reproduces_every_output_bitwise(concurrent_runs, other_seed_run):
    """sub-01 beside sub-02 with a cold shared cache vs. sub-01 alone reading that cache: betas, decoders, features,
    z-only images and encoding maps are equal bit for bit, and the image made with seed 42 is the same file in
    both (sample k uses seed + k, whatever else is generated)."""
    assert other_seed_run["proc"].returncode == 0, other_seed_run["proc"].stderr[-3000:]
    first, second = participant_files(concurrent_runs["out"]), participant_files(other_seed_run["out"])
    for kind in ("desc-diffusionc", "desc-diffusionzc"):
        seed42_first = {n: b for n, b in first.items() if f"{kind}sample1_" in n}
        seed42_second = {n.replace(f"{kind}sample2_", f"{kind}sample1_"): b for n, b in second.items()
                         if f"{kind}sample2_" in n}
        assert seed42_first and seed42_first == seed42_second, kind
    unsampled = [n for n in first if "desc-diffusionc" not in n and "desc-diffusionzc" not in n
                 and not any(k in n for k in FED_BY_SAMPLES)]
    for kind in ("stat-effect_statmap.nii.gz", "_trials.tsv", "_decoder.npz", "_features.npz", "desc-diffusionz_",
                 "desc-encodingz_stat-r_statmap.nii.gz"):
        assert any(kind in name for name in unsampled), kind
    assert [name for name in unsampled if first[name] != second.get(name)] == []


@pytest.mark.slow
def test_another_seed_changes_only_the_sampled_images(concurrent_runs, other_seed_run):
    """Seed 41's images are new; what they feed (index, metrics, figures) changes; nothing else does."""
    first, second = participant_files(concurrent_runs["out"]), participant_files(other_seed_run["out"])
    extra = set(second) - set(first)
    assert extra and all("sample2_" in name for name in extra)  # the second sample of every c and z+c image
    common = set(first) & set(second)
    changed = {name for name in common if first[name] != second[name]}
    sampled = {name for name in common if "desc-diffusionc" in name or "desc-diffusionzc" in name}
    assert sampled and sampled <= changed  # sample 1: seed 41 here, seed 42 there
    derived = changed - sampled
    assert all(any(k in name for k in FED_BY_SAMPLES) for name in derived), sorted(derived)
