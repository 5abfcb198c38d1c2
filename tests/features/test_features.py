"""Stimulus features z and c of the diffusion path, and their content-addressed cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

from bids_recon.features import load_captions, resolver_for
from bids_recon.features.cache import FeatureCache

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="module")
def tiny_model(tiny_dataset, tmp_path_factory):
    from bids_recon.generate.models import load_components, resolve_model
    from bids_recon.generate.testing import save_tiny_model, words_of
    from bids_recon.io import read_tsv

    words = words_of(read_tsv(tiny_dataset.bids_dir / "stimuli" / "captions.tsv")["caption"])
    resolved = resolve_model(str(save_tiny_model(tmp_path_factory.mktemp("m") / "tiny", words)))
    return resolved, load_components(resolved.folder, "cpu", ("vae", "text_encoder", "tokenizer"))


def _features(dataset, model, cache_root, stim_ids, chunk_stimuli=256):
    from bids_recon.features.latents import stimulus_features

    resolved, components = model
    captions = load_captions(dataset.bids_dir / "stimuli" / "captions.tsv", stim_ids)
    cache = FeatureCache(cache_root, resolved.identity.key)
    return stimulus_features(resolver_for(dataset.bids_dir), stim_ids, captions, components, cache,
                             image_size=16, batch_size=4, chunk_stimuli=chunk_stimuli), cache


def test_features_have_the_model_shapes_and_hit_the_cache(tiny_dataset, tiny_model, tmp_path):
    stim_ids = ["stim-0001.png", "stim-0002.png", "stim-0003.png"]
    first, cache = _features(tiny_dataset, tiny_model, tmp_path, stim_ids)
    assert first.z.shape == (3, 4, 8, 8)  # VAE factor 2 at 16 px
    assert first.c.shape == (3, 77, 32) and first.uncond.shape == (77, 32)
    assert first.cache_stats == {"hits": 0, "misses": 7, "corrupted": 0}  # 3 z + 3 c + empty caption
    second, _ = _features(tiny_dataset, tiny_model, tmp_path, stim_ids)
    assert second.cache_stats == {"hits": 7, "misses": 0, "corrupted": 0}
    np.testing.assert_array_equal(first.z, second.z)
    np.testing.assert_array_equal(first.c, second.c)
    assert not np.allclose(first.c[0], first.c[1])  # different captions, different embeddings


def test_features_computed_in_chunks_equal_one_pass(tiny_dataset, tiny_model, tmp_path):
    """Stimuli are read and encoded a chunk at a time (NSD's 9,841 images would be 12 GB at once)."""
    stim_ids = [f"stim-{k:04d}.png" for k in range(1, 8)]
    whole, _ = _features(tiny_dataset, tiny_model, tmp_path / "one", stim_ids)
    chunked, _ = _features(tiny_dataset, tiny_model, tmp_path / "chunks", stim_ids, chunk_stimuli=3)
    np.testing.assert_allclose(chunked.z, whole.z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunked.c, whole.c, rtol=1e-5, atol=1e-6)
    assert chunked.z.shape[0] == chunked.c.shape[0] == 7
    assert not np.allclose(chunked.c[3], chunked.c[4])  # chunk boundary: rows kept in order, not repeated


def test_features_interrupted_midway_keep_the_finished_chunks(tiny_dataset, tiny_model, tmp_path, monkeypatch):
    import bids_recon.features.latents as latents

    real, calls = latents.encode_images, []

    def failing_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a killed run: the first chunk's entries must be in the cache
        return real(*args, **kwargs)

    monkeypatch.setattr(latents, "encode_images", failing_second_chunk)
    stim_ids = [f"stim-{k:04d}.png" for k in range(1, 8)]
    with pytest.raises(KeyboardInterrupt):
        _features(tiny_dataset, tiny_model, tmp_path, stim_ids, chunk_stimuli=3)
    assert len(list((tmp_path / tiny_model[0].identity.key / "z").rglob("*.npz"))) == 3
    monkeypatch.setattr(latents, "encode_images", real)
    again, _ = _features(tiny_dataset, tiny_model, tmp_path, stim_ids, chunk_stimuli=3)
    assert again.cache_stats["hits"] == 3 and again.z.shape[0] == 7


def test_features_are_stacked_without_copies(tmp_path):
    """At NSD's size c is 2.4 GB: the stacked result plus one chunk at peak, never a list plus its stacked copy
    (the full-size run's features node held 8.5 GB before)."""
    import tracemalloc

    from bids_recon.features.latents import _cached

    n, width, chunk = 600, 2_000, 50
    cache = FeatureCache(tmp_path, "model")
    keys = [f"{k:064x}" for k in range(n)]
    for k in keys[:100]:  # some stimuli come from the cache, the rest are computed
        cache.put("c", k, np.full(width, -1.0, np.float32))

    def compute(rows):
        return np.repeat(np.asarray(rows, np.float32)[:, None], width, axis=1)

    tracemalloc.start()
    try:
        stacked = _cached(cache, "c", keys, compute, chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stacked.shape == (n, width) and stacked.dtype == np.float32
    np.testing.assert_array_equal(stacked[:100], -1.0)
    np.testing.assert_array_equal(stacked[100:, 0], np.arange(100, n))
    result_bytes = n * width * 4
    assert peak < result_bytes + 4 * chunk * width * 4, f"peak {peak / 1e6:.1f} MB, result {result_bytes / 1e6:.1f} MB"


def test_features_of_different_shapes_are_an_error(tmp_path):
    from bids_recon.features.latents import _cached

    cache = FeatureCache(tmp_path, "model")
    cache.put("z", "a" * 64, np.zeros((4, 2, 2), np.float32))
    with pytest.raises(RuntimeError, match=r"feature space z: an array of shape \(4, 3, 3\)"):
        _cached(cache, "z", ["a" * 64, "b" * 64], lambda rows: np.zeros((len(rows), 4, 3, 3), np.float32))


def test_corrupted_cache_entry_is_detected_and_recomputed(tiny_dataset, tiny_model, tmp_path):
    stim_ids = ["stim-0004.png", "stim-0005.png"]
    first, cache = _features(tiny_dataset, tiny_model, tmp_path, stim_ids)
    entries = sorted((tmp_path / tiny_model[0].identity.key / "z").rglob("*.npz"))
    assert len(entries) == 2
    entries[0].write_bytes(entries[0].read_bytes()[:-40])  # truncated
    data = dict(np.load(entries[1]))
    data["array"] = data["array"] + 1.0  # silently changed: the stored digest no longer matches
    np.savez(entries[1], **data)
    again, cache = _features(tiny_dataset, tiny_model, tmp_path, stim_ids)
    assert again.cache_stats["corrupted"] == 2 and again.cache_stats["misses"] == 2
    np.testing.assert_allclose(again.z, first.z, atol=1e-6)


def test_cache_keys_separate_models(tmp_path):
    a, b = FeatureCache(tmp_path, "model-a"), FeatureCache(tmp_path, "model-b")
    a.put("z", "ab" * 32, np.ones(3))
    assert b.get("z", "ab" * 32) is None and a.get("z", "ab" * 32) is not None


def test_missing_caption_is_bad_data(tiny_dataset, tiny_model, tmp_path):
    from bids_recon.errors import BadDataError
    from bids_recon.features.latents import stimulus_features

    with pytest.raises(BadDataError, match="caption"):
        stimulus_features(resolver_for(tiny_dataset.bids_dir), ["stim-0001.png"], {}, tiny_model[1],
                          FeatureCache(tmp_path, "x"), image_size=16)


def _hammer_cache(root: str, worker: int, rounds: int) -> tuple[int, int]:
    """Write and read the same 8 large entries as other processes do; count wrong and corrupted reads."""
    cache = FeatureCache(root, "shared-model")
    wrong = 0
    for k in range(rounds):
        key = f"{k % 8:02d}" * 32
        expected = np.full((64, 1024), k % 8, np.float32)  # 256 kB: writes take long enough to overlap
        if (k + worker) % 2:
            cache.put("z", key, expected)
        found = cache.get("z", key)
        wrong += found is not None and not np.array_equal(found, expected)
    return wrong, cache.corrupted


def test_concurrent_processes_never_see_a_partial_entry(tmp_path):
    """Processes writing and reading the same keys at once (participants of an array job sharing one cache)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(3) as pool:
        results = list(pool.map(_hammer_cache, [str(tmp_path)] * 3, range(3), [200] * 3))
    assert results == [(0, 0)] * 3
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left behind
    assert len(list(tmp_path.rglob("*.npz"))) == 8
