"""Decoders trained on the core experiment of the multi-subject NSD stand-in, applied out of distribution through
the CLI to the same subject's NSD-synthetic stand-in (``bids_recon-sim --experiments nsdsynthetic``: new images from
the same generative model) with ``--decoders-from``; refused for a participant whose decoders the folder lacks."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import run_cli


@pytest.mark.slow  # ~26 s on 2 cores
def test_core_decoders_identify_nsdsynthetic_images_and_refuse_another_participant(tmp_path):
    root = tmp_path / "MS"
    sim = subprocess.run([sys.executable, "-m", "bids_recon.sim", str(root), "--layout", "nsd", "--preset",
                          "multisubject-tiny", "--experiments", "nsdsynthetic"], capture_output=True, text=True)
    assert sim.returncode == 0, sim.stderr[-3000:]
    core, syn = tmp_path / "core", tmp_path / "syn"
    fast = ["--participant-label", "01", "--nprocs", "2", "--metrics", "pixcorr"]
    proc = run_cli([str(root), str(core), "participant", "--dataset", "nsd", "-w", str(tmp_path / "w"), *fast],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli([str(root), str(syn), "participant", "--dataset", "nsdsynthetic", "--decoders-from", str(core),
                    "-w", str(tmp_path / "w2"), *fast], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # the core run's decoder and basis, not refitted; every NSD-synthetic image decoded (none is a core image)
    for kind in ("decoder", "basis"):
        name = f"label-earlyvisual_desc-imagepca_{kind}.npz"
        before, = core.glob(f"sub-01/decoding/sub-01_task-nsdcore_{name}")
        after, = syn.glob(f"sub-01/decoding/sub-01_task-*_{name}")
        assert after.read_bytes() == before.read_bytes()
    metrics = pd.read_csv(next(syn.glob("sub-01/recon/*_task-nsdsynthetic_desc-linear_metrics.tsv")), sep="\t")
    value = metrics.set_index("metric")["value"]
    assert (metrics.set_index("metric").loc[["identification_pixels", "identification_features"], "chance"]
            == 0.5).all()
    assert set(metrics.loc[metrics["metric"] == "identification_features", "n"]) == {48}  # 40 shared + 8 colour
    # measured (seed 0): 0.758 (pixels) and 0.842 (decoded features) over the 48 images; chance 0.5
    assert value["identification_pixels"] > 0.65 and value["identification_features"] > 0.7

    # sub-02 from a folder holding only sub-01's decoders: exit 65, both named
    refused = run_cli([str(root), str(tmp_path / "other"), "participant", "--dataset", "nsdsynthetic",
                       "--participant-label", "02", "--decoders-from", str(core), "-w", str(tmp_path / "w3")], tmp_path)
    assert refused.returncode == 65, refused.stderr[-3000:]
    assert "sub-01" in refused.stderr and "sub-02" in refused.stderr
