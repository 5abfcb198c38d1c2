"""The latent-vector generator end to end through the command line, on ``bids_recon-sim --layout faces``.

One small run (tiny preset, one participant, ~1 min on 2 cores) checked against the simulator's ground truth: the
decoded latents correlate with the latents the faces were generated from and identify the test faces far above
chance; the report shows it; the outputs pass the BIDS validator and every sidecar names the generator's sha256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from bids_recon.io import read_tsv
from tests.conftest import run_cli, validator_errors
from tests.shared import shared

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    from bids_recon.sim.cli import main as simulate

    def build(root: Path) -> dict:
        bids = root / "faces"
        assert simulate([str(bids), "--layout", "faces", "--preset", "tiny"]) == 0
        out, work = root / "out", root / "work"
        generator = bids / "stimuli" / "generator.pt"
        proc = run_cli([str(bids), str(out), "participant", "-d", f"fmriprep={bids / 'derivatives' / 'fmriprep'}",
                        "-w", str(work), "--nprocs", "2", "--participant-label", "01", "--generator", "latent",
                        "--latent-generator", str(generator)], root / "faces_templateflow")
        return {"proc": proc, "out": out, "bids": bids, "generator": generator, "truth": root / "faces_groundtruth"}

    return shared(tmp_path_factory, "faces_run", build)


def _metrics(out):
    return read_tsv(out / "sub-01" / "recon" / "sub-01_task-images_desc-latent_metrics.tsv").set_index("metric")


def test_the_run_succeeds(faces_run):
    proc = faces_run["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_decoded_latents_match_the_ground_truth(faces_run):
    out = faces_run["out"]
    metrics = _metrics(out)
    # 8 test faces: identification in latent space and in pixels far above chance (0.5)
    assert metrics.loc["identification_features", "value"] >= 0.85
    assert metrics.loc["identification_pixels", "value"] >= 0.8
    corr = metrics.loc["latent_corr"]
    assert corr["value"] >= 0.5 and corr["value"] - corr["chance"] >= 0.3
    assert metrics.loc["latent_similarity", "value"] > metrics.loc["latent_similarity", "chance"]
    # the true latents the decoder was scored against are the ones the simulator generated the faces from
    truth = read_tsv(faces_run["truth"] / "latents.tsv").set_index("stim_file")
    with np.load(out / "sub-01" / "decoding" / "sub-01_task-images_label-visual_desc-latent_features.npz") as data:
        stim_ids, true, decoded = data["stim_ids"].astype(str), data["true"], data["decoded"]
    np.testing.assert_allclose(true, truth.loc[stim_ids].to_numpy(), rtol=1e-5)
    assert np.mean([np.corrcoef(d, t)[0, 1] for d, t in zip(decoded, true, strict=True)]) == \
        pytest.approx(corr["value"], abs=1e-4)
    index = read_tsv(out / "sub-01" / "recon" / "sub-01_task-images_desc-latent_reconstructions.tsv")
    assert len(index) == len(stim_ids) and {"latent_corr", "latent_similarity", "pixcorr"} <= set(index.columns)
    assert all((out / f).is_file() for f in index["file"])


def test_the_report_shows_identification_and_latent_correlation(faces_run):
    out = faces_run["out"]
    html = (out / "sub-01.html").read_text()
    assert "Latent correlation" in html and "2-way identification (decoded features)" in html
    assert "Following Dado et al. (2022)" in html
    citation = next((out / "logs").glob("*/CITATION.md")).read_text()
    assert "Dado T" in citation and "Rombach" not in citation


def test_every_sidecar_names_the_generator(faces_run):
    out = faces_run["out"]
    digest = hashlib.sha256(faces_run["generator"].read_bytes()).hexdigest()
    sidecars = sorted((out / "sub-01" / "decoding").glob("*.json")) + sorted((out / "sub-01" / "recon").glob("*.json"))
    assert len(sidecars) == 5
    for path in sidecars:
        assert json.loads(path.read_text())["GeneratorSHA256"] == digest, path.name


def test_outputs_pass_the_bids_validator(faces_run):
    code, errors = validator_errors(faces_run["out"])
    assert errors == [], errors
    code, errors = validator_errors(faces_run["bids"])  # the simulated raw dataset, with its generator and table
    assert errors == [], errors
