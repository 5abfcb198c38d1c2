"""``--decoders-from DIR``: the shared tiny run's decoders applied again to sub-01 (its betas imported, no GLM),
and refused for sub-02, whose decoders the folder does not hold."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bids_recon.design.table import read_trials
from tests.conftest import run_cli


@pytest.mark.slow  # ~26 s on 2 cores besides the shared tiny run
def test_decoders_from_an_earlier_run_decode_the_unseen_stimuli_and_refuse_another_participant(tiny_run, tmp_path):
    assert tiny_run["participant"].returncode == 0, tiny_run["participant"].stderr[-3000:]
    dataset, first = tiny_run["dataset"], tiny_run["out"]
    out = tmp_path / "again"
    proc = run_cli([str(dataset.bids_dir), str(out), "participant", "--participant-label", "01", "--betas",
                    f"bids={first}", "--decoders-from", str(first), "-w", str(tmp_path / "work"), "--nprocs", "2",
                    "--skip-bids-validation"], dataset.templateflow_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    decoding = "sub-01/decoding/sub-01_task-images_label-earlyvisual_desc-imagepca"
    # the decoder is the earlier one (not refitted); the decoded stimuli are exactly those it was not trained on
    assert (out / f"{decoding}_decoder.npz").read_bytes() == (first / f"{decoding}_decoder.npz").read_bytes()
    assert (out / f"{decoding}_basis.npz").read_bytes() == (first / f"{decoding}_basis.npz").read_bytes()
    earlier = read_trials(next(first.glob("sub-01/func/*_desc-singletrial_trials.tsv")))
    trained = set(earlier.loc[earlier["split"] == "train", "stim_id"].astype(str))
    with np.load(out / f"{decoding}_features.npz") as again, np.load(first / f"{decoding}_features.npz") as before:
        decoded = set(again["stim_ids"].astype(str))
        assert decoded and not decoded & trained
        assert decoded == set(earlier["stim_id"].astype(str)) - trained
        # the same betas through the same decoder: the earlier run's decoded test features
        order = np.argsort(again["stim_ids"].astype(str))
        np.testing.assert_array_equal(again["stim_ids"][order], np.sort(before["stim_ids"].astype(str)))
        np.testing.assert_allclose(again["decoded"][order], before["decoded"][np.argsort(before["stim_ids"])],
                                   rtol=1e-4, atol=1e-4)
    sidecar = json.loads((out / f"{decoding}_features.json").read_text())
    source = sidecar["DecoderSource"]
    assert source["Path"] == str(first / f"{decoding}_decoder.npz") and len(source["SHA256"]) == 64
    assert sidecar["Refitted"] is False and sidecar["ExcludedTrainingStimuli"] == len(trained & set(
        read_trials(next(out.glob("sub-01/func/*_trials.tsv")))["stim_id"].astype(str)))
    assert json.loads((out / f"{decoding}_decoder.json").read_text())["DecoderSource"]["SHA256"] == source["SHA256"]
    metrics = pd.read_csv(next(out.glob("sub-01/recon/*_metrics.tsv")), sep="\t")
    assert len(metrics) and np.isfinite(metrics["value"].dropna()).all()
    report = (out / "sub-01.html").read_text()
    n_train = int((earlier["split"] == "train").sum())
    assert f"from {first.name} (sub-01, trained on {n_train} trials)" in report
    # the earlier run's metrics on its own test set beside this run's: the same stimuli and decoders, equal values
    assert "Decoders trained elsewhere" in report and "trained and tested on task images" in report
    assert "not refitted" in next((out / "logs").rglob("CITATION.md")).read_text()
    assert f'decoders_from = "{first}"' in next((out / "logs").rglob("bids_recon.toml")).read_text()

    # sub-02 with a folder that holds only sub-01's decoders (the run above): exit 65 before any node, both named
    refused = run_cli([str(dataset.bids_dir), str(tmp_path / "other"), "participant", "--participant-label", "02",
                       "--betas", f"bids={first}", "--decoders-from", str(out), "-w", str(tmp_path / "work2"),
                       "--skip-bids-validation"], dataset.templateflow_dir)
    assert refused.returncode == 65, refused.stderr[-3000:]
    assert "DIR holds decoders of sub-01, not sub-02" in refused.stderr and str(out) in refused.stderr
    assert not list((tmp_path / "work2").rglob("result_*.pklz"))
