"""The simulator: BIDS validity, fMRIPrep-like layout, TemplateFlow folder, determinism, and the science
(single-trial ncsnr like NSD's, LSA betas that track the true amplitudes, decodable images)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bids_recon.errors import UsageError
from bids_recon.rois.params import DEFAULT_ROI_LABELS
from bids_recon.sim import PRESETS, TASK, load_truth, simulate_dataset
from bids_recon.sim.cli import main

BASE_CONFOUNDS = ["global_signal", "csf", "white_matter", "trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
SPACE = "MNI152NLin2009cAsym"
EARLY_VISUAL = tuple(DEFAULT_ROI_LABELS["earlyvisual"])


# --------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("sim") / "ds", preset="tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_again(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("sim_again") / "ds", preset="tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_truth(tiny):
    return {sub: load_truth(tiny.truth_dir, sub) for sub in tiny.subjects}


def _runs(trials: pd.DataFrame) -> list[tuple[str, str]]:
    return [tuple(k) for k in trials[["session", "run"]].drop_duplicates().itertuples(index=False)]


def _stem(sub: str, ses: str, run: str) -> str:
    return f"sub-{sub}_ses-{ses}_task-{TASK}_run-{run}"


def _bold_path(ds, sub: str, ses: str, run: str) -> Path:
    return (ds.fmriprep_dir / f"sub-{sub}" / f"ses-{ses}" / "func"
            / f"{_stem(sub, ses, run)}_space-{SPACE}_res-2_desc-preproc_bold.nii.gz")


def lsa_betas(ds, sub: str, truth: dict) -> np.ndarray:
    """Standard LSA: one Glover-convolved regressor per trial, cosine drift (0.01 Hz), the 9 base
    confounds, OLS per run; betas in % signal change, shape (n_trials, n_vox), rows as the trials table."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    vox = np.flatnonzero(truth["mask"])
    trials = truth["trials"]
    tr = ds.preset.tr
    out = []
    for ses, run in _runs(trials):
        g = trials[(trials["session"] == ses) & (trials["run"] == run)]
        img = nib.load(_bold_path(ds, sub, ses, run))
        y = np.asarray(img.dataobj, dtype=np.float64).reshape(-1, img.shape[-1])[vox].T
        y = y / y.mean(0) * 100.0 - 100.0
        conf_file = _bold_path(ds, sub, ses, run).parent / f"{_stem(sub, ses, run)}_desc-confounds_timeseries.tsv"
        conf = pd.read_csv(conf_file, sep="\t")[BASE_CONFOUNDS]
        names = [f"t{k:03d}" for k in range(len(g))]
        events = pd.DataFrame({"onset": g["onset"].to_numpy(float), "duration": g["duration"].to_numpy(float),
                               "trial_type": names})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = make_first_level_design_matrix(np.arange(len(y)) * tr, events, hrf_model="glover",
                                               drift_model="cosine", high_pass=0.01, add_regs=conf.to_numpy(),
                                               add_reg_names=BASE_CONFOUNDS)
        beta = np.linalg.lstsq(x.to_numpy(), y, rcond=None)[0]
        out.append(beta[[list(x.columns).index(n) for n in names]])
    return np.concatenate(out)


def zscore_per_session(betas: np.ndarray, trials: pd.DataFrame) -> np.ndarray:
    out = np.empty_like(betas)
    for _, g in trials.groupby("session"):
        i = g.index.to_numpy()
        out[i] = (betas[i] - betas[i].mean(0)) / betas[i].std(0)
    return out


def nsd_ncsnr(bz: np.ndarray, trials: pd.DataFrame) -> np.ndarray:
    """NSD's ncsnr from z-scored betas: noise var = mean over repeated stimuli of the variance across
    repeats; signal var = 1 - noise var; ncsnr = sqrt(max(signal var, 0)) / noise sd."""
    test = trials[trials["split"] == "test"]
    groups = [g.index.to_numpy() for _, g in test.groupby("stim_id") if len(g) > 1]
    noise_var = np.mean([bz[i].var(0, ddof=1) for i in groups], axis=0)
    return np.sqrt(np.clip(1.0 - noise_var, 0, None)) / np.sqrt(noise_var)


def two_way_identification(pred: np.ndarray, true: np.ndarray) -> float:
    """For each i, the fraction of j != i with corr(pred_i, true_j) < corr(pred_i, true_i); mean over i."""
    p = (pred - pred.mean(1, keepdims=True)) / pred.std(1, keepdims=True)
    t = (true - true.mean(1, keepdims=True)) / true.std(1, keepdims=True)
    c = p @ t.T / p.shape[1]
    n = len(c)
    return float(np.mean([(np.delete(c[i], i) < c[i, i]).mean() for i in range(n)]))


def ridge_identification(ds, truth: dict, bz: np.ndarray) -> float:
    """Ridge (alpha by CV) from the early-visual *label* voxels (as the pipeline selects them) to the pixels:
    train on single-trial betas, test on repeat-averaged betas of the test images."""
    from sklearn.linear_model import RidgeCV

    tf = ds.templateflow_dir
    atlas = nib.load(tf / f"tpl-{SPACE}" / f"tpl-{SPACE}_res-02_atlas-HOCPA_desc-th25_dseg.nii.gz")
    table = pd.read_csv(tf / "tpl-MNI152NLin6Asym" / "tpl-MNI152NLin6Asym_atlas-HOCPA_dseg.tsv", sep="\t")
    labels = table.loc[table["name"].isin(EARLY_VISUAL), "index"].to_numpy()
    roi = np.isin(np.asarray(atlas.dataobj).ravel()[np.flatnonzero(truth["mask"])], labels)
    stimuli, trials = truth["stimuli"], truth["trials"]
    images = np.stack([np.asarray(Image.open(ds.bids_dir / "stimuli" / f), dtype=np.float32) / 255
                       for f in stimuli["stim_file"]]).reshape(len(stimuli), -1)
    train = (trials["split"] == "train").to_numpy()
    x = bz[train][:, roi]
    mu, sd = x.mean(0), x.std(0) + 1e-9
    test_ids = np.sort(trials.loc[~train, "stim_id"].unique())
    xt = np.stack([bz[(trials["stim_id"] == s).to_numpy()][:, roi].mean(0) for s in test_ids])
    model = RidgeCV(alphas=np.logspace(0, 6, 13)).fit((x - mu) / sd, images[trials["stim_id"].to_numpy()[train] - 1])
    return two_way_identification(model.predict((xt - mu) / sd), images[test_ids - 1])


@pytest.fixture(scope="module")
def tiny_science(tiny, tiny_truth):
    """LSA betas, ncsnr, beta-vs-truth correlations and identification for each tiny subject."""
    out = {}
    for sub, truth in tiny_truth.items():
        betas = lsa_betas(tiny, sub, truth)
        bz = zscore_per_session(betas, truth["trials"])
        sig = np.flatnonzero(truth["signal"])
        amp = truth["amplitudes"]
        r = np.array([np.corrcoef(betas[:, v], amp[:, v])[0, 1] for v in sig])
        out[sub] = {"betas": betas, "ncsnr": nsd_ncsnr(bz, truth["trials"]), "r": r,
                    "ident": ridge_identification(tiny, truth, bz)}
    return out


# --------------------------------------------------------------------------------------------------
# layout and validity


def test_presets():
    assert set(PRESETS) >= {"tiny", "small"}
    t, s = PRESETS["tiny"], PRESETS["small"]
    assert (t.n_subjects, t.n_sessions, t.n_runs, t.n_train, t.n_test, t.n_test_repeats, t.image_size) == (
        2, 1, 2, 48, 8, 3, 32)
    assert (s.n_subjects, s.n_sessions, s.n_runs, s.n_train, s.n_test, s.n_test_repeats, s.image_size) == (
        2, 2, 4, 400, 30, 3, 64)
    assert s.n_trials == 490 and t.tr == 1.5
    with pytest.raises(UsageError):
        PRESETS["tiny"].with_overrides(not_a_setting=1)


def test_bids_validator_passes(tiny):
    exe = shutil.which("bids-validator-deno") or str(Path(sys.executable).parent / "bids-validator-deno")
    if not Path(exe).exists():
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    proc = subprocess.run([exe, str(tiny.bids_dir), "--format", "json"], capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert not errors, errors[:5]
    assert proc.returncode == 0


def test_raw_dataset_files(tiny):
    bids = tiny.bids_dir
    desc = json.loads((bids / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"] == "1.10.0"
    assert desc["GeneratedBy"][0]["Name"] == "bids_recon-sim"
    readme = (bids / "README").read_text()
    assert len(readme) > 150 and "SIMULATED" in readme and "tiny" in readme
    participants = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str)
    assert list(participants.columns) == ["participant_id", "age", "sex"]
    assert list(participants["participant_id"]) == [f"sub-{s}" for s in tiny.subjects]
    assert json.loads((bids / f"task-{TASK}_events.json").read_text()).keys() >= {"onset", "stim_file"}
    captions = pd.read_csv(bids / "stimuli" / "captions.tsv", sep="\t")
    counts = captions.groupby("stim_file").size()
    assert counts.between(2, 3).all() and len(counts) == PRESETS["tiny"].n_stimuli
    img = Image.open(bids / "stimuli" / "stim-0001.png")
    assert img.mode == "RGB" and img.size == (32, 32)


def test_events_and_fmriprep_files(tiny, tiny_truth):
    preset = tiny.preset
    tpl_dir = tiny.templateflow_dir / f"tpl-{SPACE}"
    tpl_atlas = nib.load(tpl_dir / f"tpl-{SPACE}_res-02_atlas-HOCPA_desc-th25_dseg.nii.gz")
    desc = json.loads((tiny.fmriprep_dir / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert [g["Name"] for g in desc["GeneratedBy"]] == ["fMRIPrep", "bids_recon-sim"]
    assert desc["GeneratedBy"][0]["Version"] == "24.1.1" and desc["SourceDatasets"]
    for sub, truth in tiny_truth.items():
        trials = truth["trials"]
        for ses, run in _runs(trials):
            stem = _stem(sub, ses, run)
            func = tiny.fmriprep_dir / f"sub-{sub}" / f"ses-{ses}" / "func"
            pre = f"{stem}_space-{SPACE}_res-2"
            bold = nib.load(func / f"{pre}_desc-preproc_bold.nii.gz")
            n_vols = bold.shape[-1]
            assert bold.shape[:3] == tpl_atlas.shape and np.allclose(bold.affine, tpl_atlas.affine)
            assert bold.header.get_zooms()[3] == pytest.approx(preset.tr)
            meta = json.loads((func / f"{pre}_desc-preproc_bold.json").read_text())
            assert meta["RepetitionTime"] == preset.tr and meta["SkullStripped"] is False
            assert meta["Resolution"].startswith("2 mm isotropic")
            mask = nib.load(func / f"{pre}_desc-brain_mask.nii.gz")
            assert np.array_equal(np.asarray(mask.dataobj) > 0, truth["mask"])
            mask_meta = json.loads((func / f"{pre}_desc-brain_mask.json").read_text())
            assert mask_meta["Type"] == "Brain" and mask_meta["RawSources"]
            assert (func / f"{pre}_boldref.nii.gz").is_file()
            conf = pd.read_csv(func / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", keep_default_na=False)
            assert len(conf) == n_vols
            for col in BASE_CONFOUNDS:
                assert conf[f"{col}_derivative1"].iloc[0] == "n/a"
            assert conf["framewise_displacement"].iloc[0] == "n/a" and "cosine00" in conf.columns
            assert json.loads((func / f"{stem}_desc-confounds_timeseries.json").read_text()).keys() == set(conf.columns)
            # raw run: same number of volumes, sidecar, events inside the run and aligned with the truth table
            raw = tiny.bids_dir / f"sub-{sub}" / f"ses-{ses}" / "func"
            assert nib.load(raw / f"{stem}_bold.nii.gz").shape[-1] == n_vols
            assert json.loads((raw / f"{stem}_bold.json").read_text())["TaskName"] == TASK
            events = pd.read_csv(raw / f"{stem}_events.tsv", sep="\t")
            assert list(events.columns) == ["onset", "duration", "trial_type", "stim_file"]
            assert (events["trial_type"] == "image").all()
            assert events["onset"].min() >= 0 and (events["onset"] + events["duration"]).max() <= n_vols * preset.tr
            assert all((tiny.bids_dir / "stimuli" / f).is_file() for f in events["stim_file"])
            rows = trials[(trials["session"] == ses) & (trials["run"] == run)]
            assert np.allclose(rows["onset"], events["onset"]) and list(rows["stim_file"]) == list(events["stim_file"])


def test_trials_table(tiny_truth):
    for truth in tiny_truth.values():
        trials, stimuli = truth["trials"], truth["stimuli"]
        assert list(trials.columns) == ["subject", "session", "run", "trial_index", "onset", "duration", "stim_id",
                                        "stim_file", "repeat", "split"]
        assert len(trials) == PRESETS["tiny"].n_trials == len(truth["amplitudes"])
        test = trials[trials["split"] == "test"]
        assert (test.groupby("stim_id").size() == 3).all() and test["stim_id"].nunique() == 8
        assert sorted(test["repeat"].unique()) == [0, 1, 2]
        # repeats go into different runs where possible (2 runs here: every test image in both)
        assert (test.groupby("stim_id")["run"].nunique() == 2).all()
        assert (trials.loc[trials["split"] == "train", "repeat"] == 0).all()
        assert list(stimuli["stim_id"]) == list(range(1, len(stimuli) + 1))
        assert truth["response"].shape == (len(stimuli), int(truth["mask"].sum()))


def test_truth_arrays(tiny_truth):
    for truth in tiny_truth.values():
        n_vox = int(truth["mask"].sum())
        kind = truth["voxel_kind"]
        assert kind.dtype == np.int8 and set(np.unique(kind)) == {0, 1, 2}
        assert np.array_equal(truth["signal"], kind > 0)
        frac_signal = truth["signal"].mean()
        assert 0.05 < frac_signal < 0.2  # most brain voxels carry no stimulus-specific signal
        early, higher = kind == 1, kind == 2
        assert np.isfinite(truth["prf_x"][early]).all() and np.isnan(truth["prf_x"][~early]).all()
        assert (truth["prf_sigma"][early] >= 0.05 - 1e-6).all() and (truth["prf_sigma"][early] <= 0.2 + 1e-6).all()
        assert np.abs(truth["semantic_weights"][higher]).sum() > 0 and not truth["semantic_weights"][~higher].any()
        sd = truth["response"].std(0)
        assert np.all((sd[truth["signal"]] > 0.45) & (sd[truth["signal"]] < 1.55)) and not sd[~truth["signal"]].any()
        assert truth["hrf"].shape[0] == n_vox and truth["hrf"].dtype == np.float32
        assert 3.5 < truth["hrf_peak"].min() and truth["hrf_peak"].max() < 7.5 and truth["hrf_peak"].std() > 0.5
        # the stored HRF gives a peak response of 1 to a 3-s image
        dt = float(truth["hrf_dt"])
        box = np.ones(int(round(3.0 / dt)))
        resp = np.stack([np.convolve(h, box)[: len(h)] * dt for h in truth["hrf"][kind > 0]])
        assert np.allclose(resp.max(1), 1.0, atol=0.03)
        assert (truth["ar1_rho"] >= 0.2).all() and (truth["ar1_rho"] <= 0.5).all()
        tgt = truth["ncsnr_target"][truth["signal"]]
        assert 0.35 < np.median(tgt) < 0.45 and np.mean((tgt >= 0.2) & (tgt <= 0.8)) > 0.9
        assert not truth["ncsnr_target"][~truth["signal"]].any()


def test_templateflow_offline(tiny):
    code = (
        "import json, templateflow.api as tf\n"
        "print(json.dumps([str(tf.get('MNI152NLin2009cAsym', resolution=2, atlas='HOCPA', desc='th25',"
        " suffix='dseg', extension='.nii.gz')), str(tf.get('MNI152NLin2009cAsym', resolution=2, desc='brain',"
        " suffix='mask', extension='.nii.gz')), str(tf.get('MNI152NLin6Asym', atlas='HOCPA', suffix='dseg',"
        " extension='.tsv'))]))\n"
    )
    env = {**os.environ, "TEMPLATEFLOW_HOME": str(tiny.templateflow_dir), "TEMPLATEFLOW_AUTOUPDATE": "0"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    tf = tiny.templateflow_dir
    assert got == [
        str(tf / f"tpl-{SPACE}" / f"tpl-{SPACE}_res-02_atlas-HOCPA_desc-th25_dseg.nii.gz"),
        str(tf / f"tpl-{SPACE}" / f"tpl-{SPACE}_res-02_desc-brain_mask.nii.gz"),
        str(tf / "tpl-MNI152NLin6Asym" / "tpl-MNI152NLin6Asym_atlas-HOCPA_dseg.tsv"),
    ]
    table = pd.read_csv(got[2], sep="\t")
    assert list(table.columns) == ["index", "name"] and len(table) == 48
    atlas = np.asarray(nib.load(got[0]).dataobj)
    brain = np.asarray(nib.load(got[1]).dataobj) > 0
    n = brain.sum()
    early = table.loc[table["name"].isin(EARLY_VISUAL), "index"]
    assert set(np.unique(atlas)) <= {0, *table["index"]} and not atlas[~brain].any()
    assert 0.07 < np.isin(atlas, early).sum() / n < 0.13


def test_same_seed_same_data_other_seed_differs(tiny, tiny_again, tiny_truth, tmp_path):
    for sub in tiny.subjects:
        a, b = tiny_truth[sub], load_truth(tiny_again.truth_dir, sub)
        for key, value in a.items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, b[key], equal_nan=True), key
        pd.testing.assert_frame_equal(a["trials"], b["trials"])
    path = _bold_path(tiny, "01", "01", "01")
    other = _bold_path(tiny_again, "01", "01", "01")
    assert np.array_equal(np.asarray(nib.load(path).dataobj), np.asarray(nib.load(other).dataobj))
    for png in ("stim-0001.png", "stim-0056.png"):
        assert (tiny.bids_dir / "stimuli" / png).read_bytes() == (tiny_again.bids_dir / "stimuli" / png).read_bytes()
    diff = simulate_dataset(tmp_path / "ds", preset="tiny", seed=1, n_subjects=1)
    c = load_truth(diff.truth_dir, "01")
    assert not np.array_equal(c["amplitudes"], tiny_truth["01"]["amplitudes"])
    assert not np.array_equal(np.asarray(nib.load(_bold_path(diff, "01", "01", "01")).dataobj),
                              np.asarray(nib.load(path).dataobj))


def test_refuses_non_empty_output(tiny):
    with pytest.raises(UsageError):
        simulate_dataset(tiny.bids_dir, preset="tiny")
    with pytest.raises(UsageError):
        simulate_dataset(tiny.bids_dir.parent / "new", preset="huge")


# --------------------------------------------------------------------------------------------------
# science: realistic single-trial SNR, betas that track the truth, decodable images


def test_ncsnr_is_nsd_like(tiny_truth, tiny_science):
    """With only 8 test images x 3 the per-voxel ncsnr estimate is noisy (16 dof), so check the centre of
    the distribution; the `small` preset gives median ~0.42 with ~70% of signal voxels inside [0.2, 0.8]."""
    sig = np.concatenate([tiny_science[s]["ncsnr"][t["signal"]] for s, t in tiny_truth.items()])
    non = np.concatenate([tiny_science[s]["ncsnr"][~t["signal"]] for s, t in tiny_truth.items()])
    assert 0.25 < np.median(sig) < 0.6, np.median(sig)
    assert np.mean((sig >= 0.2) & (sig <= 0.8)) > 0.35
    assert np.median(non) < 0.1 and np.mean(non) < 0.35
    assert np.median(sig) - np.median(non) > 0.2


def test_lsa_betas_track_true_amplitudes(tiny_science):
    for sub, res in tiny_science.items():
        assert np.median(res["r"]) > 0.25, (sub, np.median(res["r"]))


def test_images_decodable_from_early_visual(tiny_science):
    idents = [res["ident"] for res in tiny_science.values()]
    assert np.mean(idents) > 0.65 and min(idents) > 0.6, idents


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("BIDS_RECON_SIM_SMALL"), reason="set BIDS_RECON_SIM_SMALL=1 (about 40 s)")
def test_small_preset_science(tmp_path):
    ds = simulate_dataset(tmp_path / "ds", preset="small", seed=0)
    for sub in ds.subjects:
        truth = load_truth(ds.truth_dir, sub)
        bz = zscore_per_session(lsa_betas(ds, sub, truth), truth["trials"])
        nc = nsd_ncsnr(bz, truth["trials"])[truth["signal"]]
        assert 0.3 < np.median(nc) < 0.5 and np.mean((nc >= 0.2) & (nc <= 0.8)) > 0.6
        assert ridge_identification(ds, truth, bz) >= 0.9


# --------------------------------------------------------------------------------------------------
# command line


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli_ds"
    assert main([str(out), "--preset", "tiny", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert f"export TEMPLATEFLOW_HOME={out.absolute()}_templateflow" in text.splitlines()
    assert (f"bids_recon {out.absolute()} {out.absolute()}_output participant "
            f"-d fmriprep={out.absolute()}/derivatives/fmriprep") in text.splitlines()
    assert (out / "dataset_description.json").is_file() and Path(f"{out}_groundtruth").is_dir()
    assert main([str(out), "--preset", "tiny"]) == 64
    assert "--overwrite" in capsys.readouterr().err
    (out / "marker").write_text("x")
    assert main([str(out), "--overwrite"]) == 0
    assert not (out / "marker").exists()
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--preset" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# shapes of real data (bids_recon-sim --shape; run through the pipeline in tests/sim/test_shapes.py)


@pytest.mark.parametrize(("shapes", "words"), [
    ("blocks,durations", ["'blocks'", "'durations'", "0.5 s"]),
    (["unequalruns", "blocks"], ["'unequalruns'", "'blocks'"]),
    ("onerun,missingrun", ["'missingrun'", "'onerun'", "'tasks'"]),
    ("onerun,unequalruns", ["'unequalruns'", "'onerun'"]),
    ("nosessions,sessionless", ["'sessionless'", "known: nosessions"]),
])
def test_contradicting_or_unknown_shapes_are_refused_before_writing(shapes, words, tmp_path):
    with pytest.raises(UsageError) as exc:
        simulate_dataset(tmp_path / "ds", preset="tiny", shapes=shapes)
    assert all(w in str(exc.value) for w in words), str(exc.value)
    assert not any(tmp_path.iterdir())
    assert main([str(tmp_path / "ds"), "--shape", shapes if isinstance(shapes, str) else ",".join(shapes)]) == 64


def test_shapes_need_their_preset_and_layout(tmp_path, capsys):
    with pytest.raises(UsageError, match="2 subjects"):
        simulate_dataset(tmp_path / "ds", preset="tiny", shapes="missingrun", n_subjects=1)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "keep").write_text("x")
    assert main([str(tmp_path / "ds"), "--shape", "labels", "--layout", "god", "--overwrite"]) == 64
    assert "--layout god" in capsys.readouterr().err
    assert (tmp_path / "ds" / "keep").exists()  # refused before --overwrite deleted anything


def test_shape_spec_names_runs_confounds_and_events():
    """The shapes' data, without simulating: labels, run lengths, confounds, events."""
    from bids_recon.sim.model import confounds_table
    from bids_recon.sim.shapes import SHAPES, resolve_shapes

    assert resolve_shapes(None) is None and resolve_shapes("") is None
    tiny = PRESETS["tiny"]
    spec = resolve_shapes(["nosessions,labels", "tasks", "labels"])
    assert spec.names == ("nosessions", "labels", "tasks")
    p = tiny.with_overrides(**spec.preset_overrides(tiny))
    assert (p.n_sessions, p.n_runs) == (1, 4)  # two tasks, two runs each
    assert [tuple(spec.run_name(p, ("01", f"{r:02d}"))) for r in (1, 2, 3, 4)] == [
        (None, "images", "1"), (None, "images", "2"), (None, "objects", "1"), (None, "objects", "2")]
    assert spec.subject_label(0) == "CSI1"
    assert resolve_shapes("labels").run_name(tiny, ("01", "02")) == ("perceptionA", "images", "2")

    unequal = resolve_shapes("unequalruns")
    counts = unequal.run_trials(tiny)
    assert sum(counts) == tiny.n_trials and counts[0] > 1.5 * counts[1]

    rng = np.random.default_rng(0)
    table = confounds_table(rng, rng.standard_normal((20, 9)), 1.5, 1000.0, 0.05)
    conf = resolve_shapes("dummyscans,fewconfounds").edit_confounds(table)
    assert list(conf.columns) == ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z",
                                  "framewise_displacement", "non_steady_state_outlier00",
                                  "non_steady_state_outlier01", "non_steady_state_outlier02"]
    assert conf.iloc[:4, -3:].to_numpy().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]
    bright = resolve_shapes("dummyscans").edit_confounds(table)
    assert bright["csf"].iloc[0] > 1.7 * table["csf"].iloc[0] and bright["csf"].iloc[5] == table["csf"].iloc[5]

    trials = pd.DataFrame({"onset": [6.0, 10.0, 14.0], "duration": 3.0, "stim_id": [1, 2, 3],
                           "stim_file": ["a.png", "b.png", "c.png"]})
    timed = resolve_shapes("jitter,durations").edit_timing(trials, rng)
    assert not np.allclose(timed["onset"] % 1.5, 0) and (np.abs(timed["onset"] - trials["onset"]) <= 0.45).all()
    assert timed["duration"].between(1.0, 3.0).all() and timed["duration"].nunique() > 1
    messy = resolve_shapes("messyevents").events(trials, pd.DataFrame({"stim_id": [1, 2, 3], "category": "x"}),
                                                 tiny, 40, np.random.default_rng(1))
    assert {"event_type", "response_time"} <= set(messy.columns)
    images = messy[messy["stim_file"].notna()]
    assert images["onset"].tolist() == [6.0, 10.0, 14.0] and messy["stim_file"].isna().sum() >= 2
    assert not messy["onset"].is_monotonic_increasing
    assert (messy["onset"] + messy["duration"]).max() <= 40 * tiny.tr + 1e-9
    assert not SHAPES["trms"].valid_bids and all(s.valid_bids for n, s in SHAPES.items() if n != "trms")
