"""The full-size NSD stand-in (``bids_recon-sim OUT --layout nsd --preset full``), on a small geometry: the betas
read back through the ``nsd`` importer are the ground truth's, the design files agree, the output is deterministic
and does not depend on the number of workers."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.io import loadmat

from bids_recon.glm.importers import importer_for
from bids_recon.sim.betas import NSD_SCALE
from bids_recon.sim.cli import build_parser, main
from bids_recon.sim.nsdfull import ContentModel, render_images, run_sizes, session_betas, write_nsd_full

#: A small geometry with NSD's structure: 4 design sessions of 150 trials (each of 200 images 3 times), 3 written;
#: 20 shared images, 2 of them only in the unwritten session.
SMALL = {"n_sessions": 3, "trials_per_session": 150, "grid": (20, 24, 20), "image_size": 32,
         "n_subject_images": 200, "n_shared": 20, "held_shared": 2, "design_sessions": 4}
INT16_ERROR = 0.5 / NSD_SCALE + 1e-6


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    base = tmp_path_factory.mktemp("nsdfull")
    one = write_nsd_full(base / "a" / "NSD", seed=3, forms=("nii", "hdf5"), workers=1, **SMALL)
    two = write_nsd_full(base / "b" / "NSD", seed=3, forms=("nii",), workers=2, **SMALL)
    return one, two


def _betas_dir(root: Path) -> Path:
    return root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"


def _read(spec: str):
    importer = importer_for(spec)
    plan = importer.plan("01")
    brain = np.asarray(importer.brain_mask(plan).dataobj) > 0
    out = Path(tempfile.mkdtemp())
    betas = [np.asarray(importer.read_session(plan, s, brain, out / f"{k}.npy")) for k, s in enumerate(plan.sessions)]
    return plan, betas, brain


def test_betas_read_back_through_the_importer_are_the_ground_truth(written):
    ds, _ = written
    assert not Path(f"{ds.root}.partial").exists() and ds.truth_file.is_file()
    truth = dict(np.load(ds.truth_file))
    features = dict(zip(truth["ids"].tolist(), truth["features"], strict=True))
    for spec in (f"nsd={ds.root}", f"nsd={ds.root}:file=hdf5,design=expdesign"):
        plan, betas, brain = _read(spec)
        assert plan.session_labels == ["nsd01", "nsd02", "nsd03"] and plan.n_trials == 450
        assert np.array_equal(np.flatnonzero(brain.ravel()), truth["brain_index"])
        for k, (session, values) in enumerate(zip(plan.sessions, betas, strict=True)):
            ids = session.trials["stim_id"].astype(int).to_numpy()
            assert np.array_equal(ids, truth["trial_ids"][150 * k:150 * (k + 1)])
            assert session.trials.groupby("run").size().tolist() == run_sizes(150).tolist()
            f = np.stack([features[i] for i in ids])
            expected = np.concatenate([b for _, b in session_betas(3, k + 1, f, truth["weights"],
                                                                   truth["nsdgeneral_position"], truth["noise_sd"])])
            assert np.abs(values - expected).max() <= INT16_ERROR
    # the signal is f @ W inside nsdgeneral: the trials' betas there correlate with it
    f = np.stack([features[i] for i in truth["trial_ids"][:150]])
    signal = f @ truth["weights"]
    inside = betas[0][:, truth["nsdgeneral_position"]]
    r = [np.corrcoef(signal[:, v], inside[:, v])[0, 1] for v in range(signal.shape[1])]
    assert 0.2 < np.median(r) < 0.5  # single-trial SNR 0.3-0.5: r = snr / sqrt(1 + snr^2)
    outside = np.delete(betas[0], truth["nsdgeneral_position"], axis=1)
    assert abs(outside.std() - 1.5) < 0.05


def test_design_files_agree_and_the_shared_images_are_counted(written):
    ds, _ = written
    root = ds.root
    design = loadmat(root / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat")
    order = design["masterordering"].ravel().astype(int)
    subjectim = design["subjectim"].astype(int)
    shared = design["sharedix"].ravel().astype(int)
    assert order.shape == (600,) and subjectim.shape == (8, 200) and design["stimpattern"].shape[:2] == (4, 12)
    assert design["stimpattern"].sum() == 600
    assert np.array_equal(subjectim[:, :20], np.tile(shared, (8, 1)))
    assert len(np.unique(subjectim)) == 20 + 8 * 180  # the subjects' own images are disjoint (NSD: 73,000)
    assert np.array_equal(np.bincount(order, minlength=201)[1:], np.full(200, 3))
    responses = pd.read_csv(root / "nsddata" / "ppdata" / "subj01" / "behav" / "responses.tsv", sep="\t")
    assert list(responses.columns) == ["SUBJECT", "SESSION", "RUN", "TRIAL", "TIME", "ISOLDCURRENT", "ISCORRECT",
                                       "RT", "CHANGEMIND", "MEMORYRECENT", "MEMORYFIRST", "ISOLD_TOTAL",
                                       "ISCORRECT_TOTAL", "TOTAL1", "TOTAL2", "BUTTON", "MISSINGDATA", "73KID",
                                       "10KID"]
    assert len(responses) == 450 and np.array_equal(responses["10KID"], order[:450])
    assert np.array_equal(responses["73KID"], subjectim[0, order[:450] - 1])
    assert responses.groupby(["SESSION", "RUN"])["TRIAL"].max().tolist() == run_sizes(150).tolist() * 3
    counts = pd.Series(responses["73KID"]).value_counts().reindex(shared).fillna(0).astype(int)
    assert (counts == 3).sum() == 18 and (counts == 0).sum() == 2 and ds.counts["shared_in_sessions"] == 18
    later = pd.Series(subjectim[0, order[450:] - 1]).value_counts()
    assert (later.reindex(counts.index[counts == 0]) == 3).all()  # the 2 held shared images: sessions after
    info = pd.read_csv(root / "nsddata" / "experiments" / "nsd" / "nsd_stim_info_merged.csv", index_col=0)
    assert len(info) == 1460 and info["shared1000"].sum() == 20 and info["subject1"].sum() == 200
    for k in range(3):  # subject1_repK: the 1-based trial of each presentation
        rows = info[info["subject1"] == 1]
        trial = rows[f"subject1_rep{k}"].to_numpy()
        assert np.array_equal(subjectim[0, order[trial - 1] - 1], rows["nsdId"].to_numpy() + 1)
    captions = json.loads((root / "nsddata_stimuli" / "stimuli" / "nsd" / "annotations" /
                           "captions_train2017.json").read_text())
    per_image = pd.Series([a["image_id"] for a in captions["annotations"]]).value_counts()
    assert (per_image == 5).all() and set(per_image.index) <= set(info["cocoId"])
    with h5py.File(root / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5", "r") as handle:
        brick = handle["imgBrick"]
        assert brick.shape == (1460, 32, 32, 3) and brick.chunks == (1, 32, 32, 3)
        first = int(np.sort(subjectim[0])[0])
        truth = np.load(ds.truth_file)
        expected = render_images(truth["features"][:1], ContentModel.make(3), 32)[0]
        assert truth["ids"][0] == first and np.array_equal(brick[first - 1], expected)
        unseen = int(np.setdiff1d(np.arange(1, 1461), subjectim[0])[0])
        assert not brick[unseen - 1].any()


def test_same_seed_same_files_whatever_the_workers(written):
    one, two = written
    for n in (1, 2, 3):
        a = gzip.decompress((_betas_dir(one.root) / f"betas_session{n:02d}.nii.gz").read_bytes())
        b = gzip.decompress((_betas_dir(two.root) / f"betas_session{n:02d}.nii.gz").read_bytes())
        assert a == b
    with h5py.File(_betas_dir(one.root) / "betas_session02.hdf5", "r") as handle:
        stored = handle["betas"][:]
    import nibabel as nib

    assert np.array_equal(stored, np.asarray(nib.load(_betas_dir(two.root) / "betas_session02.nii.gz").dataobj)
                          .transpose(3, 2, 1, 0))
    for name in ("nsddata/ppdata/subj01/behav/responses.tsv", "nsddata/experiments/nsd/nsd_stim_info_merged.csv"):
        assert (one.root / name).read_bytes() == (two.root / name).read_bytes()


def test_an_existing_output_is_refused(written, tmp_path):
    from bids_recon.errors import UsageError

    with pytest.raises(UsageError, match="not empty"):
        write_nsd_full(written[0].root, **SMALL)
    with pytest.raises(UsageError, match="3 times"):
        write_nsd_full(tmp_path / "NSD", **{**SMALL, "trials_per_session": 100})


@pytest.mark.parametrize("args, message", [
    (["--preset", "full"], "needs --layout nsd, not --layout bids"),
    (["--preset", "full", "--layout", "things"], "needs --layout nsd"),
    (["--preset", "full", "--layout", "nsd", "--shape", "jitter"], "cannot be combined with --shape"),
    (["--preset", "full", "--layout", "nsd", "--subjects", "2"], "--subjects cannot be given"),
])
def test_cli_full_preset_needs_the_nsd_layout_alone(tmp_path, capsys, args, message):
    assert main([str(tmp_path / "NSD"), *args]) == 64
    assert message in capsys.readouterr().err
    assert not (tmp_path / "NSD").exists()


def test_cli_lists_the_full_preset():
    parser = build_parser()
    preset = next(a for a in parser._actions if a.dest == "preset")
    assert "full" in preset.choices and "tiny" in preset.choices
    assert "full: NSD subject 01's published betas" in parser.epilog and "--layout nsd only" in parser.epilog
