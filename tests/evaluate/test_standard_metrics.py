"""The field's standard metrics: real architectures with random weights, loaded from the real cache paths.

The weight files are written where torchvision / torch.hub / huggingface_hub look (a temporary TORCH_HOME and
HF_HOME; :func:`bids_recon.evaluate.random_weights.write_random_weights`), under the file names of the installed
torchvision's enums, and loaded through the same code a real run uses. Values are checked against hand-computed
examples and against the reference code's own formulas (MindEye's ``two_way_identification``,
``batchwise_cosine_similarity`` + ``topk``, scipy's correlation distance) applied to features taken
independently (forward hooks, torchvision transforms).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from scipy.spatial.distance import correlation as scipy_correlation
from torchvision import models, transforms

from bids_recon.errors import BadDataError, UsageError
from bids_recon.evaluate import compute_standard_metrics, networks, pixcorr, ssim
from bids_recon.evaluate.metrics import correlation_matrix_torch
from bids_recon.evaluate.random_weights import write_random_weights
from bids_recon.evaluate.standard import (
    METRICS,
    StandardEvaluator,
    retrieval_top1,
    select_metrics,
)

N = 6


def _images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """N structured 48 px images (oriented colour gratings) and noisy copies of them."""
    yy, xx = np.mgrid[0:48, 0:48] / 48
    truth = np.stack([np.stack([0.5 + 0.5 * np.sin(2 * np.pi * (k % 4 + 1) * (np.cos(k) * xx + np.sin(k) * yy) + c)
                                for c in range(3)], -1) for k in range(N)]).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 0.1, truth.shape)
    return np.clip(truth + noise, 0, 1).astype(np.float32), truth


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(root / "torch"))
        mp.setenv("HF_HOME", str(root / "hf"))
        mp.delenv("HF_HUB_CACHE", raising=False)
        written = write_random_weights(root / "torch", root / "hf")
        yield {"root": root, "checkpoints": root / "torch" / "hub" / "checkpoints", "written": written}


@pytest.fixture(scope="module")
def evaluator(caches):
    torch.set_num_threads(1)
    return StandardEvaluator(device="cpu", batch_size=N)


@pytest.fixture(scope="module")
def full_run(evaluator):
    recon, truth = _images()
    decoded_clip = evaluator._truth_features(truth)["clip:image_embeds"].numpy()
    decoded_clip = decoded_clip + np.random.default_rng(1).normal(0, 0.01, decoded_clip.shape)
    return recon, truth, evaluator.evaluate(recon, truth, decoded_clip=decoded_clip)


def test_every_metric_row_is_computed_from_the_random_weight_caches(full_run, caches):
    _, _, (table, per_item, provenance) = full_run
    rows = table.set_index("metric")
    assert list(rows.index) == list(METRICS)
    assert (rows["status"] == "ok").all(), rows[["status", "note"]]
    assert rows.loc["alexnet2", "input_size"] == 256 and rows.loc["inceptionv3", "input_size"] == 342
    assert rows.loc["effnet", "direction"] == "lower" and rows.loc["clip", "chance"] == 0.5
    assert len(per_item) == N and {"pixcorr", "ssim", "alexnet2", "swav"} <= set(per_item)
    # provenance: every network's file, sha256 and source; random weights are flagged as not the published ones
    nets = provenance["Networks"]
    assert set(nets) == {"alexnet", "inception_v3", "efficientnet_b1", "swav", "clip"}
    alex = nets["alexnet"]
    assert alex["File"].endswith("hub/checkpoints/alexnet-owt-7be5be79.pth") and len(alex["SHA256"]) == 64
    assert alex["MatchesPublished"] is False and alex["PublishedSHA256Prefix"] == "7be5be79"
    assert nets["clip"]["Revision"] == "0123456789abcdef0123456789abcdef01234567"
    assert nets["swav"]["File"] == str(caches["written"]["swav"])
    assert provenance["Preprocessing"]["BaseSize"] == 256 and provenance["Preprocessing"]["Antialias"] is False
    json.dumps(provenance)  # goes into the metrics sidecar as it is


def test_identification_is_above_chance_with_fixed_random_networks(full_run, evaluator):
    recon, truth, (table, _, _) = full_run
    rows = table.set_index("metric")
    for metric in ("alexnet2", "alexnet5", "inceptionv3", "clip"):
        assert rows.loc[metric, "value"] > 0.8, metric
    for metric in ("pixcorr", "ssim"):
        assert rows.loc[metric, "value"] > rows.loc[metric, "chance"] + 0.2
    # distances (lower is better): random deep networks barely tell a noisy copy from another grating (EffNet's
    # matched and mismatched distances were 0.581 and 0.579; random SwAV's features of different gratings
    # correlate at 0.998), so identical images are the check: 0 for the matched pairs, above it for the
    # mismatched pairs that make the chance level
    distances = StandardEvaluator(("effnet", "swav"), batch_size=N, networks=evaluator.networks)
    same = distances.evaluate(truth, truth).table.set_index("metric")
    for metric in ("effnet", "swav"):
        assert abs(same.loc[metric, "value"]) < 1e-6 and same.loc[metric, "chance"] > 1e-4, metric
        assert 0 < rows.loc[metric, "value"] < 2  # correlation distances of the noisy copies
    # retrieval with nearly exact decoded embeddings: all right (pool = the 8 items, one draw)
    assert rows.loc["retrieval_image", "value"] == 1.0 and rows.loc["retrieval_image", "chance"] == 1 / N
    # reconstructions of the wrong items fall to chance or below (the loaded networks are reused)
    alexnet = StandardEvaluator("alexnet2", batch_size=N, networks=evaluator.networks)
    shuffled = alexnet.evaluate(np.roll(recon, 1, axis=0), truth).table.set_index("metric")
    assert shuffled.loc["alexnet2", "value"] < 0.5


def _mindeye_two_way(preds: np.ndarray, reals: np.ndarray) -> np.ndarray:
    """MindEye's ``two_way_identification`` (return_avg=False), as in its notebook."""
    r = np.corrcoef(reals, preds)
    r = r[:len(reals), len(reals):]
    congruents = np.diag(r)
    success = r < congruents
    return np.sum(success, 0) / (len(reals) - 1)


_REFERENCE: dict[tuple[str, str, int], dict[str, np.ndarray]] = {}


def _reference_features(network: str, node: str, images: np.ndarray, checkpoints, key: str) -> np.ndarray:
    """Features taken as MindEye's notebook does, through torchvision's transforms and forward hooks.

    Cached by (network, ``key``, number of images): AlexNet's two layers come from one forward pass.
    """
    cache_key = (network, key, len(images))
    if cache_key in _REFERENCE:
        return _REFERENCE[cache_key][node]
    batch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    batch = transforms.Resize((256, 256), antialias=False)(batch)
    size = {"alexnet": 256, "inception_v3": 342, "efficientnet_b1": 255, "swav": 224}[network]
    preprocess = transforms.Compose([transforms.Resize(size, antialias=False),
                                     transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    spec = networks.network_specs()[network]
    state = torch.load(checkpoints / spec.filename, weights_only=True)
    if network == "alexnet":
        model = models.alexnet()
        model.load_state_dict(state)
        modules = {"features.4": model.features[4], "features.11": model.features[11]}
    elif network == "inception_v3":  # what inception_v3(weights=Inception_V3_Weights.DEFAULT) builds
        model = models.inception_v3(transform_input=True, aux_logits=True, init_weights=False)
        model.load_state_dict(state)
        modules = {"avgpool": model.avgpool}
    elif network == "efficientnet_b1":
        model = models.efficientnet_b1()
        model.load_state_dict(state)
        modules = {"avgpool": model.avgpool}
    else:  # facebookresearch/swav hubconf.py resnet50()
        model = models.resnet50()
        model.load_state_dict({k.replace("module.", ""): v for k, v in state.items()}, strict=False)
        modules = {"avgpool": model.avgpool}
    found: dict[str, np.ndarray] = {}
    for name, module in modules.items():
        module.register_forward_hook(lambda _m, _i, out, name=name: found.__setitem__(name, out.flatten(1).numpy()))
    with torch.no_grad():
        model.eval()(preprocess(batch))
    _REFERENCE[cache_key] = {name: value.copy() for name, value in found.items()}
    return _REFERENCE[cache_key][node]


@pytest.mark.parametrize(("metric", "network", "node"), [
    ("alexnet2", "alexnet", "features.4"), ("alexnet5", "alexnet", "features.11"),
    ("inceptionv3", "inception_v3", "avgpool"), ("effnet", "efficientnet_b1", "avgpool"), ("swav", "swav", "avgpool")])
def test_features_equal_the_reference_extraction(full_run, evaluator, caches, metric, network, node):
    """Layer, input size, normalisation and architecture settings: the features of two images match."""
    recon = full_run[0][:2]
    expected = _reference_features(network, node, recon, caches["checkpoints"], "recon")
    ours = StandardEvaluator(metric, networks=evaluator.networks)
    found = ours._features(ours._base(recon))[f"{network}:{node}"].numpy()
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("metric", "network", "node"), [
    ("alexnet2", "alexnet", "features.4"), ("alexnet5", "alexnet", "features.11"),
    ("effnet", "efficientnet_b1", "avgpool")])
def test_scores_equal_the_reference_formula(full_run, caches, metric, network, node):
    """MindEye's two_way_identification and scipy's correlation distance on independently taken features."""
    recon, truth, (_, per_item, _) = full_run
    preds = _reference_features(network, node, recon, caches["checkpoints"], "recon").astype(np.float64)
    reals = _reference_features(network, node, truth, caches["checkpoints"], "truth").astype(np.float64)
    if METRICS[metric].kind == "identification":
        np.testing.assert_array_equal(per_item[metric], _mindeye_two_way(preds, reals))
    else:
        expected = [scipy_correlation(reals[i], preds[i]) for i in range(N)]
        np.testing.assert_allclose(per_item[metric], expected, rtol=1e-4)


def test_clip_metric_uses_the_projected_image_embedding(full_run):
    from transformers import CLIPModel

    recon, truth, (_, per_item, _) = full_run
    folder = networks.clip_snapshot()
    model = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval()
    norm = transforms.Normalize([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])

    def encode_image(images):  # OpenAI clip's encode_image = the projected, layer-normed class token
        x = transforms.Resize(224, antialias=False)(transforms.Resize((256, 256), antialias=False)(
            torch.from_numpy(images.transpose(0, 3, 1, 2).copy())))
        with torch.no_grad():
            out = model.get_image_features(pixel_values=norm(x))
        return (out if torch.is_tensor(out) else out.pooler_output).numpy()

    np.testing.assert_array_equal(per_item["clip"], _mindeye_two_way(encode_image(recon), encode_image(truth)))


def test_pixcorr_hand_examples():
    left = np.zeros((1, 16, 16, 3), np.float32)
    left[:, :, :8] = 1.0
    top = np.zeros_like(left)
    top[:, :8] = 1.0
    result = compute_standard_metrics(np.concatenate([left, 1 - left, top]), np.concatenate([left, left, left]),
                                      metrics="pixcorr")
    # separable halves are uncorrelated at any resolution; the negative image correlates -1
    np.testing.assert_allclose(result.per_item["pixcorr"], [1.0, -1.0, 0.0], atol=1e-6)
    assert result.table.loc[0, "value"] == pytest.approx(0.0, abs=1e-6)


def test_ssim_hand_example_constant_images():
    """Constant images: SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), C1 = (0.01 * 1)^2."""
    recon = np.full((2, 20, 20, 3), 0.5, np.float32)
    truth = np.full((2, 20, 20, 3), 0.25, np.float32)
    c1 = 0.01 ** 2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5 ** 2 + 0.25 ** 2 + c1)
    result = compute_standard_metrics(recon, truth, metrics=["ssim"], chance_levels=False)
    np.testing.assert_allclose(result.per_item["ssim"], expected, rtol=1e-5)
    np.testing.assert_allclose(ssim(recon, truth, size=32), expected, rtol=1e-5)  # metrics.py agrees


def test_resizing_follows_torchvision_bilinear_without_antialias():
    image = np.random.default_rng(3).uniform(0, 1, (2, 30, 30, 3)).astype(np.float32)
    reference = transforms.Resize(425, antialias=False)(torch.from_numpy(image.transpose(0, 3, 1, 2).copy()))
    flat = reference.flatten(1).numpy().astype(np.float64)
    expected = np.corrcoef(flat[0], flat[1])[0, 1]
    assert pixcorr(image[:1], image[1:])[0] == pytest.approx(expected, rel=1e-6)


def test_correlation_matrix_and_distance_hand_examples():
    a = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    b = np.array([[1.0, 3.0, 2.0], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(correlation_matrix_torch(torch.tensor(a), torch.tensor(b), chunk=2),
                               [[0.5, 1.0], [-1.0, -0.5]], atol=1e-12)
    assert scipy_correlation(a[0], b[0]) == pytest.approx(0.5)  # what EffNet/SwAV report per item


def _mindeye_retrieval(brain: np.ndarray, images: np.ndarray) -> tuple[float, float]:
    """MindEye's retrieval code for one draw: ``batchwise_cosine_similarity`` and ``topk(k=1)``."""
    def batchwise_cosine_similarity(z, b):
        b = b.T
        return ((z @ b) / (np.linalg.norm(z, axis=1, keepdims=True) @ np.linalg.norm(b, axis=0, keepdims=True))).T

    labels = np.arange(len(brain))
    bwd_sim = batchwise_cosine_similarity(images, brain)  # clip, brain
    fwd_sim = batchwise_cosine_similarity(brain, images)  # brain, clip
    top1 = [float(np.mean(np.argsort(sim, axis=1)[:, -1] == labels)) for sim in (fwd_sim, bwd_sim)]
    return top1[0], top1[1]


def test_retrieval_hand_example_and_mindeye_axes():
    t = np.deg2rad(20)
    images = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    brain = np.array([[1.0, 0.0], [np.cos(t), np.sin(t)], [0.0, 1.0]])
    # per image (columns of cos(brain, image)): each image's own brain embedding ranks first -> 3/3;
    # per brain embedding: brain 1 is closest to image 0 -> 2/3
    result = retrieval_top1(brain, images)
    assert result["image"] == 1.0 and result["brain"] == pytest.approx(2 / 3)
    assert (result["image"], result["brain"]) == _mindeye_retrieval(brain, images)
    assert result["pool"] == 3 and result["draws"] == 1


def test_retrieval_draws_are_mindeyes():
    rng = np.random.default_rng(5)
    images = rng.normal(size=(40, 6))
    brain = images + rng.normal(0, 1.5, images.shape)
    result = retrieval_top1(brain, images, pool_size=10, n_draws=4, seed=42)
    state = np.random.RandomState(42)  # MindEye: seed_everything(42); np.random.choice(..., 300, replace=False)
    expected = []
    for _ in range(4):
        idx = state.choice(np.arange(40), size=10, replace=False)
        expected.append(_mindeye_retrieval(brain[idx], images[idx]))
    np.testing.assert_allclose(result["image_draws"], [e[0] for e in expected])
    np.testing.assert_allclose(result["brain_draws"], [e[1] for e in expected])
    assert result["chance"] == 0.1


def test_missing_weights_give_the_skip_line_not_an_error(caches, caplog):
    path = caches["checkpoints"] / networks.network_specs()["alexnet"].filename
    moved = path.with_suffix(".moved")
    path.rename(moved)
    try:
        with caplog.at_level(logging.WARNING, logger="bids_recon.evaluate.standard"):
            recon, truth = _images()
            table = compute_standard_metrics(recon[:4], truth[:4], metrics="pixcorr,alexnet2,alexnet5").table
    finally:
        moved.rename(path)
    rows = table.set_index("metric")
    assert rows.loc["pixcorr", "status"] == "ok"
    for metric in ("alexnet2", "alexnet5"):
        assert rows.loc[metric, "status"] == "not computed" and np.isnan(rows.loc[metric, "value"])
        assert rows.loc[metric, "note"] == f"weights not found at {path}; run bids_recon-fetch"
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"AlexNet(2), AlexNet(5) not computed: weights not found at {path}; run bids_recon-fetch"]


def test_unreadable_or_wrong_checkpoint_is_reported(caches, tmp_path):
    swav = caches["checkpoints"] / "swav_800ep_pretrain.pth.tar"
    saved = swav.read_bytes()
    try:
        torch.save({"module.conv1.weight": torch.zeros(64, 3, 7, 7)}, swav)  # not a whole ResNet-50
        table = compute_standard_metrics(*_images()[::-1], metrics="swav").table
        assert table.loc[0, "status"] == "not computed" and "not a SwAV ResNet-50 checkpoint" in table.loc[0, "note"]
        swav.write_bytes(b"truncated")
        table = compute_standard_metrics(*_images()[::-1], metrics="swav").table
        assert "cannot read the weights file" in table.loc[0, "note"]
    finally:
        swav.write_bytes(saved)


def test_inception_is_built_as_its_pretrained_builder():
    model = networks.build_architecture("inception_v3")
    assert model.transform_input is True and model.aux_logits is True


def test_best_of_n_selection_rules(evaluator, full_run):
    recon, truth, _ = full_run
    evaluator = StandardEvaluator("pixcorr,clip", batch_size=N, networks=evaluator.networks)
    bad = np.roll(recon, 1, axis=0)
    samples = [bad, recon]
    decoded = evaluator._truth_features(truth)["clip:image_embeds"].numpy()
    table, per_item, provenance = evaluator.evaluate_samples(samples, truth, ("brain_clip", "oracle_clip", "mean"),
                                                             decoded_clip=decoded)
    assert set(table["aggregate"]) == {"sample", "mean", "best_brain_clip", "best_oracle_clip"}
    by = table.set_index(["aggregate", "sample", "metric"])["value"]
    mean = (by[("sample", 0, "pixcorr")] + by[("sample", 1, "pixcorr")]) / 2
    assert by[("mean", -1, "pixcorr")] == pytest.approx(mean)
    best = per_item[per_item["aggregate"] == "best_brain_clip"]
    # the rule: per item, the sample whose CLIP embedding is most cosine-similar to the decoded embedding
    sims = []
    for sample in samples:
        e = evaluator._features(evaluator._base(sample))["clip:image_embeds"].numpy()
        sims.append((e / np.linalg.norm(e, axis=1, keepdims=True) * decoded /
                     np.linalg.norm(decoded, axis=1, keepdims=True)).sum(1))
    np.testing.assert_array_equal(best["selected_sample"], np.argmax(sims, axis=0))
    for k in (0, 1):  # the per-item values of a pick are that sample's values
        sample_rows = per_item[(per_item["aggregate"] == "sample") & (per_item["sample"] == k)]
        chosen = best["selected_sample"].to_numpy() == k
        np.testing.assert_array_equal(best["pixcorr"].to_numpy()[chosen], sample_rows["pixcorr"].to_numpy()[chosen])
    assert "no ground truth" in provenance["Selection"]["brain_clip"]
    assert "upper bound" in provenance["Selection"]["oracle_clip"]
    # brain_clip without a CLIP-space decoder: stated, not raised
    table = evaluator.evaluate_samples(samples, truth, "brain_clip").table
    best = table[table["aggregate"] == "best_brain_clip"]
    assert (best["status"] == "not computed").all() and "CLIP-space decoder" in best["note"].iloc[0]


def test_metric_selection_is_checked():
    assert select_metrics("all") == tuple(METRICS)
    assert select_metrics("ssim, pixcorr") == ("pixcorr", "ssim")
    with pytest.raises(UsageError, match="known: all, pixcorr"):
        select_metrics(["alexnet3"])


def test_published_rows_use_metric_ids():
    from bids_recon.evaluate.published import PROTOCOLS, PUBLISHED

    assert {row.method.split()[0] for row in PUBLISHED} == {"Takagi", "Brain-Diffuser", "MindEye1", "MindEye2",
                                                            "MindEye2,"}
    for row in PUBLISHED:
        assert set(row.values) <= set(METRICS) and all(0 < v < 1 for v in row.values.values())
        assert row.protocol in PROTOCOLS and row.source == PROTOCOLS[row.protocol].source
    # REFERENCE.md: Takagi's 83/83/76/77 are their own evaluation, from MindEye1's table (982 images, 37 sessions);
    # MindEye2's Table 1 recomputed every method on 1,000 images (40 sessions)
    own = next(r for r in PUBLISHED if r.method.startswith("Takagi") and r.protocol == "mindeye1").values
    assert (own["alexnet2"], own["alexnet5"], own["inceptionv3"], own["clip"]) == (0.83, 0.83, 0.76, 0.77)
    recomputed = next(r for r in PUBLISHED if r.method.startswith("Takagi") and r.protocol == "mindeye2").values
    assert (recomputed["pixcorr"], recomputed["alexnet2"], recomputed["swav"]) == (0.246, 0.789, 0.504)
    assert (PROTOCOLS["mindeye1"].test_images, PROTOCOLS["mindeye2"].test_images) == (982, 1000)


def test_uint8_and_float_images_give_the_same_values():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    recon = rng.integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    as_uint8 = compute_standard_metrics(recon, images, metrics="pixcorr,ssim").table["value"]
    as_float = compute_standard_metrics(recon / 255.0, images.astype(np.float32) / 255, metrics="pixcorr,ssim")
    np.testing.assert_allclose(as_uint8, as_float.table["value"], rtol=1e-6)
    with pytest.raises(BadDataError, match=r"expected float images in \[0, 1\]"):
        compute_standard_metrics(recon * 1.0, images, metrics="pixcorr")
    with pytest.raises(BadDataError, match="shape"):
        compute_standard_metrics(recon[..., 0], images, metrics="pixcorr")


def test_weight_file_names_are_the_installed_torchvision_enums():
    """The table networks.py reads (to avoid importing torchvision for file names) is what torchvision says."""
    from torchvision.models import get_weight

    for name, spec in networks.network_specs().items():
        if spec.kind != "torchvision":
            continue
        weights = get_weight(spec.weights_enum)
        assert spec.source == weights.url and spec.filename == networks.url_filename(weights.url), name
        assert spec.approx_size_mib == weights.meta.get("_file_size"), name


def test_checking_weights_imports_neither_torch_nor_torchvision(tmp_path):
    import subprocess
    import sys

    code = ("import sys\nfrom bids_recon.evaluate.networks import weights_fingerprint, weights_status\n"
            "weights_status(); weights_fingerprint()\nprint('torch' in sys.modules, 'torchvision' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, "TORCH_HOME": str(tmp_path), "HF_HOME": str(tmp_path)})
    assert proc.stdout.split() == ["False", "False"], proc.stderr[-2000:]
