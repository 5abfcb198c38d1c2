"""``group --shared-space``: three participants of the multi-subject NSD stand-in through the CLI (their betas
imported), one of them cut to one session; the group level decodes each participant in a space shared with the
others and writes the comparison with its own decoders."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import run_cli


@pytest.mark.slow  # ~25 s on 2 cores
def test_group_shared_space_over_participants_one_cut_to_one_session(tmp_path):
    root = tmp_path / "MS"
    sim = subprocess.run([sys.executable, "-m", "bids_recon.sim", str(root), "--layout", "nsd", "--preset",
                          "multisubject-tiny"], capture_output=True, text=True)
    assert sim.returncode == 0, sim.stderr[-3000:]
    out, work = tmp_path / "out", tmp_path / "work"
    common = ["--dataset", "nsd", "-w", str(work), "--nprocs", "2"]
    for labels in (["01", "02"], ["03", "--session-label", "nsd01"]):
        proc = run_cli([str(root), str(out), "participant", "--participant-label", *labels, *common], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli([str(root), str(out), "group", "--dataset", "nsd", "--shared-space", "srm"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(next((out / "group").glob("*_desc-sharedspace_metrics.tsv")), sep="\t")
    assert sorted(table["participant_id"].unique()) == ["sub-01", "sub-02", "sub-03"]
    cut = table[table["participant_id"] == "sub-03"]
    assert set(cut["sessions"]) == {1}  # its outputs hold one session: every row used it
    shared = table[table["method"].str.startswith("shared space (srm)")]
    assert len(shared) == 3 and (shared["value"] > 0.6).all()  # well above chance (0.5) for everyone
    assert (table["alignment_stimuli"] > 0).all() and (table["references"].str.count("sub-") == 2).all()
    assert "Decoders shared across participants" in (out / "group.html").read_text()
    # fewer than three participants: a clear error, not a crash
    proc = run_cli([str(root), str(out), "group", "--dataset", "nsd", "--shared-space", "srm",
                    "--participant-label", "01", "02"], tmp_path)
    assert proc.returncode == 18 and "needs 3 participants" in proc.stderr
