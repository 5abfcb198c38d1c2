"""The field's metrics through the command line: one participant of the tiny dataset, linear generator, with
random-weight networks of the real architectures in TORCH_HOME / HF_HOME (written under the real file names, so
they are found and loaded as real weights would be). One run, several checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bids_recon.evaluate.standard import METRICS
from bids_recon.evaluate.variants import DIAGNOSTICS
from bids_recon.io import read_tsv
from bids_recon.naming import SubjectOutputs, group_figures_dir, group_metrics_path, group_report_path
from tests.conftest import run_cli
from tests.shared import shared

pytestmark = pytest.mark.slow

RETRIEVAL = ("retrieval_image", "retrieval_brain")


@pytest.fixture(scope="module")
def metrics_run(tiny_dataset, tmp_path_factory):
    from bids_recon.evaluate.random_weights import write_random_weights

    def build(root: Path) -> dict:
        written = write_random_weights(root / "torch", root / "hf", clip="tiny")
        out = root / "out"
        env = {"TORCH_HOME": str(root / "torch"), "HF_HOME": str(root / "hf"), "HF_HUB_CACHE": None,
               "OMP_NUM_THREADS": "1"}
        participant = run_cli([str(tiny_dataset.bids_dir), str(out), "participant", "-d",
                               f"fmriprep={tiny_dataset.fmriprep_dir}", "-w", str(root / "work"), "--participant-label",
                               "01", "--skip-bids-validation", "--nprocs", "2", "--metrics-batch-size", "8"],
                              tiny_dataset.templateflow_dir, env=env)
        group = run_cli([str(tiny_dataset.bids_dir), str(out), "group"], tiny_dataset.templateflow_dir, env=env)
        names = SubjectOutputs("01", tiny_dataset.task, "MNI152NLin2009cAsym", "2")
        return {"out": out, "names": names, "participant": participant, "group": group, "written": written,
                "task": tiny_dataset.task}

    return shared(tmp_path_factory, "metrics_run", build)


def test_every_metric_row_is_written_with_its_status(metrics_run):
    proc, out, names = metrics_run["participant"], metrics_run["out"], metrics_run["names"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = read_tsv(out / names.metrics("linear")).set_index("metric")
    assert list(table.index) == [*METRICS, *DIAGNOSTICS]
    assert (table["method"] == "linear").all()
    computed = table.drop(index=list(RETRIEVAL))
    assert (computed["status"] == "ok").all(), computed[["status", "note"]]
    assert (table.loc[list(RETRIEVAL), "status"] == "not computed").all()  # no CLIP-space decoder: said, not hidden
    # fixed random networks still rank the seen image first more often than chance on the simulator
    for metric in ("alexnet5", "inceptionv3", "identification_pixels"):
        assert table.loc[metric, "value"] > table.loc[metric, "chance"] == 0.5, metric
    index = read_tsv(out / names.recon_index("linear"))
    assert {"stimulus", "file", "alexnet2", "clip", "swav", "identification_pixels"} <= set(index)


def test_sidecar_records_weights_and_definitions(metrics_run):
    out, names, written = metrics_run["out"], metrics_run["names"], metrics_run["written"]
    sidecar = json.loads((out / names.metrics("linear", ".json")).read_text())
    networks = sidecar["Networks"]
    assert set(networks) == {"alexnet", "inception_v3", "efficientnet_b1", "swav", "clip"}
    for name, info in networks.items():
        assert re.fullmatch(r"[0-9a-f]{64}", info["SHA256"]) and info["Source"].startswith("https://"), name
        assert info["File"].startswith(str(written[name]) if name == "clip" else str(written[name].parent)), name
    assert networks["alexnet"]["MatchesPublished"] is False  # random weights are never taken for the real ones
    assert set(sidecar["Metrics"]) == {*METRICS, *DIAGNOSTICS}
    assert all(m["Source"] for m in sidecar["Metrics"].values())
    assert sidecar["PublishedComparison"]["Comparable"] is False
    assert sidecar["Generator"] == "linear" and sidecar["Preprocessing"]["PixelSize"] == 425
    assert sidecar["NotComputedLines"] == [
        "Image retrieval, Brain retrieval not computed: needs brain-decoded CLIP ViT-L/14 image embeddings (no "
        "CLIP-space decoder in this run)"]


def test_log_and_report_say_what_was_not_computed(metrics_run):
    out = metrics_run["out"]
    log = next((out / "logs").glob("*/bids_recon.log")).read_text()
    assert "weights not found" not in log  # every network was found in the caches
    html = (out / "sub-01.html").read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Image retrieval, Brain retrieval not computed: needs brain-decoded CLIP ViT-L/14" in text
    assert "The published table&#39;s layout" in text
    # the two published tables, each row with its protocol (REFERENCE.md)
    assert "Takagi &amp; Nishimoto 2023 (own evaluation) – – 83.0% 83.0% 76.0% 77.0%" in text
    assert "Takagi &amp; Nishimoto 2023 0.246 0.410 78.9% 85.6% 83.8% 82.1% 0.811 0.504" in text
    assert "982 images, 37 sessions (MindEye1 table): different data" in text
    assert "different data" in text and "not the published files" in text


def test_group_averages_each_metric_with_its_spread(metrics_run):
    proc, out = metrics_run["group"], metrics_run["out"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = read_tsv(out / group_metrics_path(metrics_run["task"]))
    assert set(table["participant_id"]) == {"sub-01"} and {"alexnet2", "swav"} <= set(table["metric"])
    html = (out / group_report_path()).read_text()
    assert "group mean: linear" in html and "(n=1)" in html and "different data" in html
    assert (out / group_figures_dir() / f"task-{metrics_run['task']}_desc-linear_metrics.svg").is_file()
