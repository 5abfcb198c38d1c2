"""evaluate_generated, the one evaluation call of every generator: rows, samples, best-of-n, skipped metrics, and
the report's and settings' side of it. Fast: the networks are stand-ins passed in (``networks=``), except where a
real weight file must be found or missed on disk."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from bids_recon.errors import BadDataError, UsageError
from bids_recon.evaluate import evaluate_generated, two_way_identification
from bids_recon.evaluate.networks import LoadedNetwork, network_specs, weights_fingerprint
from bids_recon.evaluate.params import EvaluationParams
from bids_recon.evaluate.published import comparability
from bids_recon.evaluate.standard import (
    METRICS,
    StandardEvaluator,
    missing_weights_lines,
    not_computed_lines,
    required_networks,
)
from bids_recon.evaluate.variants import DIAGNOSTICS, LazySamples, samples_from_index

N = 6


def _stand_in(name: str) -> LoadedNetwork:
    """A 'network' whose every node is the input batch pooled to 8 x 8 (deterministic, cheap, image-like)."""
    import torch

    spec = network_specs()[name]

    def extract(pixels):
        pooled = torch.nn.functional.adaptive_avg_pool2d(pixels, 8).flatten(1)
        return {node: pooled * (k + 1) for k, node in enumerate(spec.nodes)}

    return LoadedNetwork(spec, extract, {"Network": spec.title, "File": f"/stand-in/{name}", "SHA256": "0" * 64,
                                         "Source": spec.source, "MatchesPublished": None})


@pytest.fixture(scope="module")
def stand_ins():
    return {name: _stand_in(name) for name in required_networks("all")}


def _evaluator(stand_ins, metrics="all"):
    return StandardEvaluator(metrics, batch_size=4, networks=stand_ins)


@pytest.fixture(scope="module")
def images():
    """N structured 24 px images, a close reconstruction of each and a poor one."""
    yy, xx = np.mgrid[0:24, 0:24] / 24
    truth = np.stack([np.stack([0.5 + 0.5 * np.sin(2 * np.pi * (k % 3 + 1) * (np.cos(k) * xx + np.sin(k) * yy) + c)
                                for c in range(3)], -1) for k in range(N)]).astype(np.float32)
    rng = np.random.default_rng(0)
    good = np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1).astype(np.float32)
    poor = np.clip(0.3 * truth + 0.7 * rng.uniform(0, 1, truth.shape), 0, 1).astype(np.float32)
    return truth, good, poor


def test_one_sample_gives_one_row_per_metric_with_status(stand_ins, images):
    truth, good, _ = images
    feats = np.random.default_rng(1).normal(size=(N, 5))
    result = evaluate_generated({"linear": [good]}, truth, EvaluationParams(), stim_ids=[f"s{k}" for k in range(N)],
                                features={"linear": (feats + 0.1, feats)}, evaluator=_evaluator(stand_ins))
    table = result.table.set_index("metric")
    assert list(table.index) == [*METRICS, *DIAGNOSTICS]
    assert set(table["method"]) == {"linear"} and set(table["selection"]) == {"single"}
    assert (table["samples"] == 1).all()
    retrieval = ["retrieval_image", "retrieval_brain"]
    assert (table.drop(index=retrieval)["status"] == "ok").all()
    assert (table.loc[retrieval, "status"] == "not computed").all()
    assert "no CLIP-space decoder" in table.loc["retrieval_image", "note"]
    # the field's rows are the evaluator's own; the pixel identification is two_way_identification of the pixels
    alone = _evaluator(stand_ins).evaluate(good, truth).table.set_index("metric")
    np.testing.assert_allclose(table.loc[list(METRICS)[:8], "value"], alone.loc[list(METRICS)[:8], "value"])
    expected = two_way_identification(good.reshape(N, -1), truth.reshape(N, -1)).mean()
    assert table.loc["identification_pixels", "value"] == pytest.approx(expected)
    assert table.loc["identification_pixels", "input_size"] == 24 and table.loc["pixcorr", "input_size"] == 425
    assert table.loc["feature_corr", "value"] > 0.99
    # per item: one row per stimulus, every metric a column
    assert list(result.per_item["stimulus"]) == [f"s{k}" for k in range(N)]
    assert {"alexnet2", "swav", "identification_pixels", "feature_corr"} <= set(result.per_item)
    provenance = result.provenance
    assert provenance["Selection"]["Rule"] == "single" and provenance["Samples"] == {"linear": 1}
    assert provenance["Metrics"]["identification_pixels"]["Source"].startswith("bids_recon")
    assert provenance["Metrics"]["alexnet2"]["Source"].startswith("MindEye")
    assert provenance["NotComputedLines"] == [
        "Image retrieval, Brain retrieval not computed: needs brain-decoded CLIP ViT-L/14 image embeddings (no "
        "CLIP-space decoder in this run)"]


def test_samples_are_averaged_with_their_spread(stand_ins, images):
    truth, good, poor = images
    result = evaluate_generated({"zc": [good, poor], "z": [good]}, truth, EvaluationParams(metrics=["pixcorr", "ssim",
                                                                                                    "alexnet2"]),
                                evaluator=_evaluator(stand_ins, "pixcorr,ssim,alexnet2"))
    table = result.table.set_index(["method", "metric"])
    per_sample = result.provenance["PerSample"]["zc"]
    for metric in ("pixcorr", "alexnet2", "identification_pixels"):
        row = table.loc[("zc", metric)]
        assert row["value"] == pytest.approx(np.mean(per_sample[metric]))
        assert row["sd"] == pytest.approx(np.std(per_sample[metric], ddof=1))
        assert row["selection"] == "mean" and row["samples"] == 2
    assert per_sample["pixcorr"][0] > per_sample["pixcorr"][1]  # the good sample first
    assert table.loc[("z", "pixcorr"), "selection"] == "single" and "z" not in result.provenance["PerSample"]
    assert len(result.per_item) == 3 * N and set(result.per_item["sample"]) == {0, 1}
    assert result.provenance["Selection"]["Rule"] == "mean"


def test_best_of_n_picks_per_image_and_applies_to_every_metric(stand_ins, images):
    truth, good, poor = images
    samples = [np.concatenate([poor[:3], good[3:]]), np.concatenate([good[:3], poor[3:]])]
    evaluator = _evaluator(stand_ins, "pixcorr,clip,retrieval_image")
    result = evaluate_generated({"zc": samples}, truth, EvaluationParams(selection="oracle_clip"), evaluator=evaluator)
    assert result.provenance["NotComputedLines"] == [  # why, without how the other rows were made
        "Image retrieval not computed: needs brain-decoded CLIP ViT-L/14 image embeddings (no CLIP-space decoder "
        "in this run)"]
    items = result.per_item
    picked = items[items["selected"]].sort_values("stimulus")
    assert list(picked["sample"]) == [1, 1, 1, 0, 0, 0]  # per image the sample closest to the seen image
    assert "selected_sample" not in items and items.groupby("stimulus")["selected"].sum().eq(1).all()
    table = result.table.set_index("metric").drop(index="retrieval_image")
    assert (table["selection"] == "best_oracle_clip").all()
    for metric in ("pixcorr", "identification_pixels"):
        assert table.loc[metric, "value"] == pytest.approx(picked[metric].mean())
        assert "best of 2 by oracle_clip" in table.loc[metric, "note"]
    assert "upper bound" in result.provenance["Selection"]["Description"]
    # the brain-decoded rule without a CLIP-space decoder: every row says why, nothing is silently averaged
    brain = evaluate_generated({"zc": samples}, truth, EvaluationParams(selection="brain_clip"), evaluator=evaluator)
    assert (brain.table["status"] == "not computed").all()
    assert brain.table["note"].str.contains("brain_clip selection needs brain-decoded CLIP").all()
    assert "selected" not in brain.per_item


def test_decoded_clip_gives_retrieval_and_brain_clip_picks(stand_ins, images):
    truth, good, poor = images
    evaluator = _evaluator(stand_ins, "clip,retrieval_image,retrieval_brain")
    decoded = evaluator._truth_features(truth)["clip:image_embeds"].numpy()  # a perfect CLIP-space decoder
    result = evaluate_generated({"zc": [poor, good]}, truth, EvaluationParams(selection="brain_clip"),
                                decoded_clip={"zc": decoded}, evaluator=evaluator)
    table = result.table.set_index("metric")
    assert table.loc["retrieval_image", "value"] == 1.0 and table.loc["retrieval_image", "chance"] == 1 / N
    assert table.loc["clip", "status"] == "ok"
    assert result.per_item.loc[result.per_item["sample"] == 1, "selected"].all()


def test_uint8_samples_from_an_index_in_the_stimulus_order(stand_ins, images, tmp_path):
    truth, good, _ = images
    store = {f"f{k}": (good[k] * 255).round().astype(np.uint8) for k in range(N)}
    order = [f"s{k}" for k in range(N)]
    index = pd.DataFrame({"stimulus": order[::-1], "variant": "z", "sample": 0, "file": [f"f{k}" for k in
                                                                                       range(N)][::-1]})
    samples = samples_from_index(index, order, store.__getitem__)
    assert isinstance(samples["z"], LazySamples) and len(samples["z"]) == 1
    np.testing.assert_array_equal(samples["z"][0], np.stack(list(store.values())))
    as_uint8 = evaluate_generated(samples, truth, EvaluationParams(metrics=["pixcorr"]),
                                  evaluator=_evaluator(stand_ins, "pixcorr")).table
    as_float = evaluate_generated({"z": [np.stack(list(store.values())) / 255.0]}, truth,
                                  EvaluationParams(metrics=["pixcorr"]), evaluator=_evaluator(stand_ins, "pixcorr"))
    np.testing.assert_allclose(as_uint8["value"], as_float.table["value"], rtol=1e-5)
    with pytest.raises(BadDataError, match=r"variant z, sample 0: 5 images, expected one for each of the 6"):
        samples_from_index(index.iloc[1:], order, store.__getitem__)
    with pytest.raises(BadDataError, match="6 images but 5 seen images"):
        evaluate_generated(samples, truth[:5], evaluator=_evaluator(stand_ins, "pixcorr"))


def test_missing_weights_give_one_line_and_a_not_computed_row(tmp_path, monkeypatch, caplog, images):
    """AlexNet's file is on disk (random weights of the real architecture), InceptionV3's is not."""
    import torch
    from torchvision import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    specs = network_specs()
    before = weights_fingerprint(["alexnet", "inception_v3"])
    assert before == {"alexnet": "absent", "inception_v3": "absent"}
    alexnet = specs["alexnet"].weights_path()
    alexnet.parent.mkdir(parents=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(models.alexnet().state_dict(), alexnet)
    assert weights_fingerprint(["alexnet"])["alexnet"].startswith(f"{alexnet}|")  # a rerun recomputes
    inception = specs["inception_v3"].weights_path()
    line = f"InceptionV3 not computed: weights not found at {inception}; run bids_recon-fetch"
    assert missing_weights_lines("alexnet2,inceptionv3") == [line]
    assert missing_weights_lines("alexnet2,inceptionv3", allow_download=True) == []
    truth, good, _ = images
    params = EvaluationParams(metrics=["alexnet2", "inceptionv3"])
    with caplog.at_level(logging.WARNING, logger="bids_recon.evaluate.standard"):
        result = evaluate_generated({"linear": [good]}, truth, params)
        quiet = evaluate_generated({"linear": [good]}, truth, params, log_skips=False)
    assert [r.getMessage() for r in caplog.records if r.name == "bids_recon.evaluate.standard"] == [line]
    for table in (result.table, quiet.table):
        rows = table.set_index("metric")
        assert rows.loc["alexnet2", "status"] == "ok" and rows.loc["inceptionv3", "status"] == "not computed"
        assert rows.loc["inceptionv3", "note"] == f"weights not found at {inception}; run bids_recon-fetch"
    assert result.provenance["NotComputedLines"] == [line] == not_computed_lines(result.table)
    assert result.provenance["Networks"]["alexnet"]["File"] == str(alexnet)
    # the report says it in one line, and the published layout's cell says 'not computed'
    from bids_recon.reports.participant import ITEM_ROWS_SHOWN, metrics_section

    section = metrics_section(result.table, result.provenance, result.per_item, tmp_path / "m.svg")
    assert section.text.split("\n\n").count(line) == 1
    layout = section.tables[0][1].set_index("Method")
    assert layout.loc["this run: linear", "InceptionV3"] == "not computed"
    assert section.tables[-1] == ("Per test stimulus", section.tables[-1][1]) and len(section.tables[-1][1]) == len(
        result.per_item)
    # at NSD's size the page shows the first rows and names the file that has them all (a browser lays out
    # 10,802 rows in seconds)
    many = pd.concat([result.per_item] * (ITEM_ROWS_SHOWN // len(result.per_item) + 1), ignore_index=True)
    caption, shown = metrics_section(result.table, result.provenance, many, tmp_path / "m.svg",
                                     item_source="sub-01/recon/x_reconstructions.tsv").tables[-1]
    assert len(shown) == ITEM_ROWS_SHOWN and f"the first {ITEM_ROWS_SHOWN} of {len(many)} rows" in caption
    assert "sub-01/recon/x_reconstructions.tsv" in caption


def test_comparability_is_decided_from_the_settings():
    assert comparability("nsd", "shared1000=True").comparable
    assert comparability("NSD", "nsd-shared1000").comparable
    sim = comparability("", "")
    assert not sim.comparable and sim.reason.startswith("different data: not NSD")
    split = comparability("nsd", "")
    assert not split.comparable and "test split by repeats" in split.reason
    size = comparability("nsd", "shared1000=True", pixel_size=256)
    assert not size.comparable and size.reason.startswith("different preprocessing")
    assert comparability("nsd", "shared1000=1").to_sidecar() == {"Comparable": True, "Reason": "", "Dataset": "nsd",
                                                                 "TestSplit": "shared1000=1"}


def test_published_layout_marks_different_data_and_formats_as_papers():
    from bids_recon.reports.metrics import published_layout

    table = pd.DataFrame({"metric": ["pixcorr", "alexnet2", "effnet", "clip"], "method": "zc",
                          "value": [0.2541, 0.8312, 0.71234, np.nan],
                          "status": ["ok", "ok", "ok", "not computed"], "samples": 5, "selection": "mean"})
    layout = published_layout(table).set_index("Method")
    ours = layout.loc["this run: zc (mean of 5 samples)"]
    assert (ours["PixCorr"], ours["AlexNet(2)"], ours["EffNet-B"], ours["CLIP"], ours["SwAV"]) == \
        ("0.254", "83.1%", "0.712", "not computed", "–")
    # Takagi & Nishimoto twice, from two tables with different protocols, each labelled with its own
    own = layout.loc["Takagi & Nishimoto 2023 (own evaluation)"]
    assert (own["AlexNet(2)"], own["InceptionV3"], own["PixCorr"]) == ("83.0%", "76.0%", "–")
    assert own["Data"] == "NSD shared1000, 982 images, 37 sessions (MindEye1 table): different data"
    recomputed = layout.loc["Takagi & Nishimoto 2023"]
    assert (recomputed["AlexNet(2)"], recomputed["PixCorr"], recomputed["SwAV"]) == ("78.9%", "0.246", "0.504")
    assert recomputed["Data"] == "NSD shared1000, 1,000 images, 40 sessions (MindEye2 Table 1): different data"
    same = published_layout(table.assign(n=982), {"Comparable": True}).set_index("Method")
    assert same.loc["Takagi & Nishimoto 2023 (own evaluation)", "Data"] == \
        "NSD shared1000, 982 images, 37 sessions (MindEye1 table)"
    assert same.loc["Takagi & Nishimoto 2023", "Data"].endswith("other test images (1000 vs this run's 982)")
    assert layout.loc["MindEye2 (Scotti et al. 2024)", "Image retrieval"] == "98.8%"


def test_group_statistics_leave_out_what_was_not_computed():
    from bids_recon.reports.group import group_statistics

    rows = pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03"] * 2,
                         "metric": ["alexnet2"] * 3 + ["clip"] * 3, "value": [0.8, 0.9, 0.7, 0.6, np.nan, 0.8],
                         "chance": 0.5, "status": ["ok"] * 4 + ["not computed", "ok"]})
    stats = group_statistics(rows).set_index("metric")
    assert stats.loc["alexnet2", "mean"] == pytest.approx(0.8)
    assert stats.loc["alexnet2", "sd"] == pytest.approx(0.1)
    assert stats.loc["alexnet2", "participants"] == 3 and stats.loc["clip", "participants"] == 2
    assert stats.loc["clip", "not computed"] == 1 and stats.loc["clip", "mean"] == pytest.approx(0.7)
    assert stats.loc["clip", "label"] == "CLIP"


def test_evaluation_settings_are_validated(tmp_path):
    from bids_recon.cli.parser import build_parser
    from bids_recon.cli.run import build_config
    from bids_recon.config import Config

    parser = build_parser()
    args = parser.parse_args([str(tmp_path), str(tmp_path / "out"), "participant", "--metrics", "alexnet2,clip",
                              "ssim", "--sample-selection", "oracle_clip", "--metrics-batch-size", "4",
                              "--allow-download"])
    config = build_config(args, parser)
    ev = config.workflow.evaluate
    assert (ev.metrics, ev.selection, ev.batch_size) == (["alexnet2", "clip", "ssim"], "oracle_clip", 4)
    assert config.execution.allow_download is True and Config().execution.allow_download is False
    assert Config().workflow.evaluate.metrics == ["all"]
    for table, words in (({"metrics": ["alexnet3"]}, "did you mean 'alexnet5'"),
                         ({"metrics": ["all", "clip"]}, "'all' cannot be combined"),
                         ({"selection": "best"}, "must be one of 'mean', 'brain_clip', 'oracle_clip'"),
                         ({"dataset": "things"}, "must be one of '', 'nsd'"),
                         ({"batch_size": 0}, "must be >= 1")):
        with pytest.raises(UsageError, match=words):
            Config.from_dict({"workflow": {"evaluate": table}})
    with pytest.raises(UsageError, match="is now 'execution.allow_download'"):
        Config.from_dict({"workflow": {"generate": {"diffusion": {"allow_download": True}}}})
