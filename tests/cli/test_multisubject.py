"""Several participants through the CLI on the multi-subject NSD stand-in (their betas imported), as issue 25 is
checked: the group level's shared space with one participant cut to one session, and the core experiment's
decoders applied out of distribution to the same participant's NSD-synthetic stand-in (``--experiments
nsdsynthetic``: new images from the same generative model) with ``--decoders-from``.

One stand-in and one core run serve both (the suite's time); the refusal of another participant's decoders is
tests/cli/test_decoders_from.py's."""

from __future__ import annotations

import pandas as pd
import pytest

from bids_recon.sim.cli import main as sim_main
from tests.conftest import run_cli


@pytest.mark.slow  # ~40 s on 2 cores
def test_shared_space_with_one_participant_cut_to_one_session_and_core_decoders_on_nsdsynthetic(tmp_path):
    root = tmp_path / "MS"
    assert sim_main([str(root), "--layout", "nsd", "--preset", "multisubject-tiny", "--experiments",
                     "nsdsynthetic"]) == 0
    core, syn = tmp_path / "core", tmp_path / "syn"
    fast = ["--nprocs", "2", "--metrics", "pixcorr"]
    for labels in (["01", "02"], ["03", "--session-label", "nsd01"]):  # sub-03: one session of three
        proc = run_cli([str(root), str(core), "participant", "--dataset", "nsd", "--participant-label", *labels,
                        "-w", str(tmp_path / "w"), *fast], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]

    # group level: each participant decoded in a space shared with the two others
    proc = run_cli([str(root), str(core), "group", "--dataset", "nsd", "--shared-space", "srm"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(next((core / "group").glob("*_desc-sharedspace_metrics.tsv")), sep="\t")
    assert sorted(table["participant_id"].unique()) == ["sub-01", "sub-02", "sub-03"]
    assert set(table.loc[table["participant_id"] == "sub-03", "sessions"]) == {1}  # its outputs hold one session
    shared = table[table["method"] == "shared space (srm), first sessions"]
    assert len(shared) == 3 and (shared["value"] > 0.6).all()  # well above chance (0.5) for everyone
    assert (table["alignment_stimuli"] > 0).all() and (table["references"].str.count("sub-") == 2).all()
    assert "Decoders shared across participants" in (core / "group.html").read_text()

    # sub-01's core decoders on its NSD-synthetic images
    proc = run_cli([str(root), str(syn), "participant", "--dataset", "nsdsynthetic", "--participant-label", "01",
                    "--decoders-from", str(core), "-w", str(tmp_path / "w2"), *fast], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sidecar, = core.glob("sub-01/decoding/sub-01_task-nsdcore_label-earlyvisual_desc-imagepca_decoder.json")
    assert '"StimulusIds": "nsd"' in sidecar.read_text()  # NSD's 73k ids: no synthetic image is one of them
    for kind in ("decoder", "basis"):  # the core run's decoder and basis, not refitted
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
    report = (syn / "sub-01.html").read_text()  # the core run's scores beside these
    assert "Decoders trained elsewhere" in report and "trained and tested on task nsdcore" in report
