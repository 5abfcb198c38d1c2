"""Beta importers (``--betas FORMAT=PATH``): every format the simulator writes is read back to its ground truth, and
decodes as the betas it was written from; dataset ROIs by colour-table names; voxel selection; the NSD recipe.

Function-level (in-process, small files) except the two runs marked slow: a GLM run's betas exported to GLMsingle's
format and imported back through the command line give the same decoders and metrics; the recipe's command passes
``--check-only`` on a mock NSD tree.
"""

from __future__ import annotations

import gzip
import re
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_recon.decoding.params import DecodingParams
from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.features.params import StimulusParams
from bids_recon.glm.importers import IMPORTERS, ImportContext, importer_for, parse_betas
from bids_recon.glm.importers.base import check_series, iter_nifti_blocks, split_betas_spec, wanted_sessions
from bids_recon.sim import load_truth
from bids_recon.sim.betas import (
    NSD_SCALE,
    BetaSet,
    write_bids_outputs,
    write_bold5000,
    write_glmsingle,
    write_nsd,
)
from tests import ROOT
from tests.conftest import layout_copy

#: Largest error of NSD's int16 storage (x 300, rounded): half a step.
INT16_ERROR = 0.5 / NSD_SCALE + 1e-6


def _read_all(spec: str, subject: str | None = None, context: ImportContext | None = None):
    """Every session of one participant: (plan, betas (n_trials, n_brain_voxels), trials, brain mask)."""
    importer = importer_for(spec, context)
    subject = subject or importer.subjects()[0]
    plan = importer.plan(subject)
    brain = np.asarray(importer.brain_mask(plan).dataobj) > 0
    out = Path(tempfile.mkdtemp())
    betas = np.concatenate([np.asarray(importer.read_session(plan, s, brain, out / f"{k}.npy", block_bytes=4096))
                            for k, s in enumerate(plan.sessions)])
    return plan, betas, pd.concat([s.trials for s in plan.sessions], ignore_index=True), brain


def _truth(dataset, subject: str = "01"):
    truth = load_truth(dataset.truth_dir, subject)
    with np.load(dataset.truth_dir / f"sub-{subject}" / f"sub-{subject}_betas.npz") as f:
        return truth, f["betas"]


def _features(stimuli: pd.DataFrame) -> dict[str, np.ndarray]:
    """Targets per stimulus name: position, size and the category (one-hot), from the ground truth."""
    onehot = pd.get_dummies(stimuli["category"]).to_numpy(float)
    values = np.column_stack([stimuli[["x", "y", "size"]].to_numpy(float), onehot])
    return dict(zip(stimuli["stim_file"].astype(str), values, strict=True))


def _decode(betas: np.ndarray, trials: pd.DataFrame, features: dict[str, np.ndarray]):
    """Stack (z-scored per session, test = repeated), train a ridge decoder, decode the test stimuli; returns the
    decoded features and the 2-way identification accuracy."""
    from bids_recon.decoding import train_and_decode
    from bids_recon.glm.runs import combine_runs

    sessions = list(dict.fromkeys(trials["session"].astype(str)))
    rows = [np.flatnonzero(trials["session"].astype(str).to_numpy() == s) for s in sessions]
    tables = [trials.iloc[r].reset_index(drop=True) for r in rows]
    stacked, table = combine_runs([betas[r] for r in rows], tables)
    ids = np.array(sorted(features))
    _, decoded = train_and_decode(stacked, table, np.arange(stacked.shape[1]), ids,
                                  np.stack([features[i] for i in ids]),
                                  DecodingParams(alphas=[1.0, 10.0, 100.0, 1000.0]))
    corr = np.corrcoef(decoded.decoded, decoded.true)[: len(decoded.true), len(decoded.true):]
    ident = float(np.mean([(corr[i, i] > np.delete(corr[i], i)).mean() for i in range(len(corr))]))
    return decoded.decoded, ident


def _assert_same_decoding(imported, source, trials_imported, trials_source, features, atol):
    a, ident_a = _decode(imported, trials_imported, features)
    b, ident_b = _decode(source, trials_source, features)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
    assert np.abs(a - b).max() < atol and abs(ident_a - ident_b) <= 0.02


# -- the formats, read back to the ground truth -----------------------------------------------------------------------


def test_nsd_nifti_and_hdf5_give_the_ground_truth_and_the_same_decoders(layout_dataset):
    dataset = layout_dataset("nsd")
    root = dataset.bids_dir.parent
    truth, source = _truth(dataset)
    for form in ("nii", "hdf5"):
        plan, betas, trials, brain = _read_all(f"nsd={root}:file={form}", context=ImportContext(
            stimuli=StimulusParams(resolver="nsd")))
        assert plan.space == "func1pt8mm" and plan.task == "nsdcore" and plan.session_labels == ["nsd01"]
        assert plan.stored_dtype == "int16" and plan.scale == pytest.approx(1 / 300) and "x 300" not in plan.scale_note
        assert (brain == truth["mask"]).all()
        assert np.abs(betas - source).max() <= INT16_ERROR  # only NSD's int16 rounding
        assert list(trials["stim_id"]) == list(truth["trials"]["stim_file"].astype(str))  # 1-based 73k ids
        assert list(trials["run"]) == list(truth["trials"]["run"])
        assert {p.name for p in plan.design_files} == {"responses.tsv", "nsd_expdesign.mat"}  # cross-checked
    _assert_same_decoding(betas, source, trials, trials, _features(truth["stimuli"]), atol=0.05)


def _nsd_tree(root: Path, n_sessions: int = 2, per_session: int = 750, seed: int = 0,
              run_sizes: tuple[int, ...] = (63, 62) * 6) -> tuple[BetaSet, Path]:
    """An NSD tree of ``per_session``-trial sessions on a tiny grid, in runs of ``run_sizes`` (NSD's: 63 and 62)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((4, 3, 3), bool)
    mask[1:3, :, 1:] = True
    runs = np.repeat([f"{r:02d}" for r in range(1, len(run_sizes) + 1)], run_sizes)[:per_session]
    ids = rng.permutation(np.arange(1, 73001))[: n_sessions * per_session]
    betas = [rng.normal(0, 2, (per_session, int(mask.sum()))).astype(np.float32) for _ in range(n_sessions)]
    trials = [pd.DataFrame({"session": f"nsd{k + 1:02d}", "run": runs,
                            "stim_file": ids[k * per_session:(k + 1) * per_session].astype(str)})
              for k in range(n_sessions)]
    beta_set = BetaSet("01", [f"nsd{k + 1:02d}" for k in range(n_sessions)], betas, trials, mask, np.eye(4))
    write_nsd(root, [beta_set], shared=ids[:10], forms=("nii",))
    return beta_set, root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"


def _stimpattern(sessions: list[list[int]], slots: int = 40) -> np.ndarray:
    """NSD's ``stimpattern`` (sessions x runs x trial slots, 1 where an image is shown) for the given trials per
    run of each session (blank slots between the trials, as NSD's runs have)."""
    pattern = np.zeros((len(sessions), max(len(s) for s in sessions), slots), np.uint8)
    for s, runs in enumerate(sessions):
        for r, n in enumerate(runs):
            pattern[s, r, 1:2 * n:2] = 1  # every other slot
    return pattern


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_nsd_trials_per_session_come_from_the_design_or_the_betas_never_from_a_constant(version, tmp_path,
                                                                                         caplog):
    """Trials of a session from the expdesign's stimpattern (runs of 16 and 14 here, not NSD's 750 = 63/62 x 6), or
    without one from the betas files' trial counts (runs n/a); a count that differs is refused stating both."""
    import h5py
    from scipy.io import loadmat, savemat

    beta_set, folder = _nsd_tree(tmp_path, n_sessions=2, per_session=30, run_sizes=(16, 14))
    (tmp_path / "nsddata" / "ppdata" / "subj01" / "behav" / "responses.tsv").unlink()
    design = tmp_path / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"
    values = {k: v for k, v in loadmat(design).items() if not k.startswith("__")}

    def write(pattern: np.ndarray | None) -> None:
        design.unlink()
        chosen = {**values, **({"stimpattern": pattern} if pattern is not None else {})}
        if version == "v5":
            savemat(design, chosen)
            return
        with h5py.File(design, "w", userblock_size=512) as handle:  # MATLAB's HDF5 form: h5py sees the axes reversed
            for name, value in chosen.items():
                handle.create_dataset(name, data=np.asarray(value).T)

    write(_stimpattern([[16, 14], [16, 14]]))
    plan, betas, trials, _ = _read_all(f"nsd={tmp_path}")
    assert plan.design_files[0].name == "nsd_expdesign.mat" and plan.session_labels == ["nsd01", "nsd02"]
    assert list(trials["stim_id"]) == list(beta_set.all_trials["stim_file"])
    assert trials.groupby(["session", "run"]).size().tolist() == [16, 14, 16, 14]  # the design's runs
    assert np.abs(betas - np.concatenate(beta_set.betas)).max() <= INT16_ERROR
    write(_stimpattern([[16, 15], [16, 13]]))  # session 1 lists 31 trials, its betas hold 30
    with pytest.raises(BadDataError, match=r"betas_session01.nii.gz holds 30 trials but nsd_expdesign.mat lists 31 "
                                           r"for session 1 \(its stimpattern\)"):
        importer_for(f"nsd={tmp_path}").plan("01")
    write(None)  # no stimpattern: each session's trials counted from its betas file, in order
    with caplog.at_level("INFO", logger="bids_recon.glm.importers"):
        plan, _, trials, _ = _read_all(f"nsd={tmp_path}")
    assert trials.groupby("session").size().tolist() == [30, 30] and set(trials["run"]) == {"n/a"}
    assert list(trials["stim_id"]) == list(beta_set.all_trials["stim_file"])
    assert "session 1: 30, session 2: 30" in caplog.text
    (folder / "betas_session01.nii.gz").unlink()
    with pytest.raises(BadDataError, match="no stimpattern.*betas_session01 is absent"):
        importer_for(f"nsd={tmp_path}").plan("01", ["2"])


def test_nsd_without_brainmask_keeps_a_voxel_whose_first_trial_beta_is_zero(tmp_path, caplog):
    """Without brainmask.nii.gz a voxel is outside the brain only when its beta is 0 in every trial of the first
    session (not when the first trial's is); the voxels left out are counted in the log."""
    rng = np.random.default_rng(3)
    mask = np.zeros((4, 3, 3), bool)
    mask[1:3, :, 1:] = True
    betas = rng.normal(0, 2, (12, int(mask.sum()))).astype(np.float32)
    betas[0, :3] = 0.0  # three brain voxels whose first trial's beta is exactly 0
    betas[:, 5] = 0.0  # one brain voxel that is 0 in every trial
    trials = pd.DataFrame({"session": "nsd01", "run": "01", "stim_file": [str(i) for i in range(1, 13)]})
    write_nsd(tmp_path, [BetaSet("01", ["nsd01"], [betas], [trials], mask, np.eye(4))], forms=("nii",))
    (tmp_path / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "brainmask.nii.gz").unlink()
    importer = importer_for(f"nsd={tmp_path}")
    with caplog.at_level("INFO", logger="bids_recon.glm.importers"):
        brain = np.asarray(importer.brain_mask(importer.plan("01")).dataobj) > 0
    expected = mask.copy()
    expected[tuple(np.argwhere(mask)[5])] = False
    assert (brain == expected).all()  # the first-trial zeros kept, the all-zero voxel out
    n_grid = mask.size
    assert (f"{int(expected.sum())} of the {n_grid} voxels" in caplog.text and "12 trials of session nsd01" in
            caplog.text and f"the {n_grid - int(expected.sum())} that are 0" in caplog.text), caplog.text


def test_nsd_design_files_that_disagree_and_a_session_missing_are_refused(tmp_path):
    _, folder = _nsd_tree(tmp_path / "a", n_sessions=3, per_session=20)
    responses = tmp_path / "a" / "nsddata" / "ppdata" / "subj01" / "behav" / "responses.tsv"
    table = pd.read_csv(responses, sep="\t")
    table.loc[5, "73KID"] += 1
    table.to_csv(responses, sep="\t", index=False)
    with pytest.raises(BadDataError, match=r"responses.tsv and nsd_expdesign.mat disagree on 1 trials \(first: trial "
                                           r"6"):
        importer_for(f"nsd={tmp_path / 'a'}").plan("01")
    table.loc[5, "73KID"] -= 1
    pd.concat([table, table.iloc[[0]]]).to_csv(responses, sep="\t", index=False)  # one trial the betas lack
    (tmp_path / "a" / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat").unlink()
    with pytest.raises(BadDataError, match="betas_session01.nii.gz holds 20 trials but responses.tsv lists 21 for "
                                           "session 1"):
        importer_for(f"nsd={tmp_path / 'a'}").plan("01")
    table.to_csv(responses, sep="\t", index=False)
    (folder / "betas_session02.nii.gz").unlink()
    with pytest.raises(BadDataError) as caught:
        importer_for(f"nsd={tmp_path / 'a'}").plan("01")
    assert "betas_session02.nii.gz is absent between betas_session01.nii.gz and betas_session03.nii.gz" in \
        str(caught.value) and "responses.tsv" in str(caught.value) and int(caught.value.exit_code) == 65
    assert importer_for(f"nsd={tmp_path / 'a'}").plan("01", ["1", "ses-nsd03"]).session_labels == ["nsd01", "nsd03"]
    with pytest.raises(BadDataError, match="session.s. 2 have no betas"):
        importer_for(f"nsd={tmp_path / 'a'}").plan("01", ["1-3"])


def test_integers_where_floats_are_stored_are_refused_and_nsd_floats_x300_rescaled(tmp_path, caplog):
    rng = np.random.default_rng(1)
    mask = np.ones((3, 3, 2), bool)
    betas = [rng.normal(0, 1.5, (6, 18)).astype(np.float32) for _ in range(2)]
    trials = [pd.DataFrame({"session": s, "run": "01", "stim_file": [f"img{k}_{i}.jpg" for i in range(6)]})
              for k, s in enumerate(["01", "02"])]
    beta_set = BetaSet("CSI1", ["01", "02"], betas, trials, mask, np.eye(4))
    write_bold5000(tmp_path, beta_set)
    first = tmp_path / "CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-01.nii.gz"
    for k, betas_k in enumerate(betas):  # NSD-style integers (x 300) given to a format that stores floats
        nib.save(nib.Nifti1Image(np.rint(beta_set.volume(betas_k) * 300).astype(np.int16), np.eye(4)),
                 tmp_path / f"CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{k + 1:02d}.nii.gz")
    with pytest.raises(BadDataError) as caught:
        importer_for(f"bold5000={tmp_path}").plan("CSI1")
    message = str(caught.value)
    assert first.name in message and "int16" in message and "scale=1/300" in message
    assert re.search(r"median \|value\| \d+", message) and int(caught.value.exit_code) == 65
    plan, read, _, _ = _read_all(f"bold5000={tmp_path}:scale=1/300")  # said what they are: accepted
    assert np.abs(read - np.concatenate(betas)).max() <= INT16_ERROR
    _, folder = _nsd_tree(tmp_path / "nsd", n_sessions=1, per_session=20)
    stored = nib.load(folder / "betas_session01.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(stored.dataobj).astype(np.float32), stored.affine),
             folder / "betas_session01.nii.gz")
    with caplog.at_level("WARNING", logger="bids_recon.glm.importers"):
        plan = importer_for(f"nsd={tmp_path / 'nsd'}").plan("01")
    assert plan.scale == pytest.approx(1 / 300) and "saved as float" in plan.scale_note
    assert "median |value|" in caplog.text and "x 300" in caplog.text


@pytest.mark.parametrize("form", ["npy", "mat"])
def test_glmsingle_outputs_named_by_the_events_give_the_ground_truth(form, tiny_dataset, tmp_path):
    truth, source = _truth(tiny_dataset)
    context = ImportContext(tiny_dataset.bids_dir, StimulusParams())
    if form == "npy":  # written by the simulator's default layout
        folder = tiny_dataset.bids_dir / "derivatives" / "GLMsingle"
    else:
        from bids_recon.sim.betas import simulated_betas  # noqa: F401 - the same BetaSet, MATLAB's v7.3 form

        folder = tmp_path / "glmsingle"
        trials = truth["trials"]
        beta_set = BetaSet("01", ["01"], [source], [trials], truth["mask"], nib.load(
            next((tiny_dataset.bids_dir / "derivatives" / "GLMsingle" / "sub-01").glob("brainmask.nii.gz"))).affine)
        write_glmsingle(folder, beta_set, form="mat", per_session=True)
    plan, betas, trials, brain = _read_all(f"glmsingle={folder}", "01", context)
    assert (brain == truth["mask"]).all() and plan.n_trials == len(truth["trials"])
    assert np.abs(betas - source).max() < 1e-6
    assert list(trials["stim_id"]) == list(truth["trials"]["stim_file"])  # named by the events
    _assert_same_decoding(betas, source, trials, trials, _features(truth["stimuli"]), atol=1e-4)


def test_glmsingle_design_that_the_events_do_not_name_is_refused(tiny_dataset, tmp_path):
    folder = tmp_path / "GLMsingle"
    shutil.copytree(tiny_dataset.bids_dir / "derivatives" / "GLMsingle", folder)
    info_file = folder / "sub-01" / "DESIGNINFO.npy"
    info = np.load(info_file, allow_pickle=True).item()
    info["stimorder"] = np.roll(info["stimorder"], 1)
    np.save(info_file, info)
    with pytest.raises(BadDataError, match="the events do not name the trials GLMsingle modelled"):
        importer_for(f"glmsingle={folder}", ImportContext(tiny_dataset.bids_dir)).plan("01")
    (folder / "sub-01" / "brainmask.nii.gz").unlink()
    with pytest.raises(MissingInputError, match="mask=PATH"):
        importer_for(f"glmsingle={folder}", ImportContext(tiny_dataset.bids_dir)).plan("01")


def test_bold5000_gives_the_ground_truth_and_refuses_image_names_the_betas_lack(layout_dataset, tmp_path):
    dataset = layout_dataset("bold5000")
    truth, source = _truth(dataset, "CSI1")
    folder = dataset.stores_dir / "BOLD5000_GLMsingle_betas"
    plan, betas, trials, brain = _read_all(f"bold5000={folder}")
    assert plan.session_labels == ["01"] and plan.space == "T1w" and (brain == truth["mask"]).all()
    assert np.abs(betas - source).max() < 1e-6
    assert list(trials["stim_id"]) == list(truth["trials"]["stim_file"])  # bare file names, as the files resolver
    copy = tmp_path / "b"
    shutil.copytree(folder, copy)
    names = copy / "CSI1_imgnames.txt"
    names.write_text(names.read_text() + "COCO_train2014_000000000001.jpg\n")
    with pytest.raises(BadDataError) as caught:
        importer_for(f"bold5000={copy}").plan("CSI1")
    assert "CSI1_imgnames.txt" in str(caught.value) and "CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-01.nii.gz" in \
        str(caught.value) and f"{len(trials) + 1} image names" in str(caught.value)


def test_things_volume_and_table_forms_give_the_ground_truth(layout_dataset, tmp_path):
    dataset = layout_dataset("things")
    truth, source = _truth(dataset)
    derivatives = dataset.bids_dir / "derivatives"
    names = truth["trials"]["stim_file"].astype(str)
    plan, betas, trials, brain = _read_all(f"things={derivatives}")  # betas_vol (catch trials included)
    assert plan.session_labels == ["things01"] and (brain == truth["mask"]).all()
    assert np.abs(betas - source).max() < 1e-6 and list(trials["stim_id"]) == list(names)
    catch = names.str.startswith("catch").to_numpy()
    assert (trials["split"].to_numpy() == np.where(catch, "none", "train")).all()  # modelled, never decoded
    meta = pd.concat([s.metadata for s in plan.sessions], ignore_index=True)
    repeated = names.map(names.value_counts()).to_numpy() > 1
    assert (meta["trial_type"].to_numpy() == np.where(catch, "catch", np.where(repeated, "test", "exp"))).all()
    plan, betas_csv, trials_csv, _ = _read_all(f"things={derivatives}:form=csv")  # no catch trials in the table
    assert np.abs(betas_csv - source[~catch]).max() < 1e-6 and list(trials_csv["stim_id"]) == list(names[~catch])
    copy = tmp_path / "d"
    shutil.copytree(derivatives / "betas_vol", copy / "betas_vol")
    shutil.copytree(derivatives / "brainmasks", copy / "brainmasks")
    conditions = sorted(copy.rglob("*_conditions.tsv"))[0]
    table = pd.read_csv(conditions, sep="\t")
    table.iloc[:-1].to_csv(conditions, sep="\t", index=False)
    with pytest.raises(BadDataError, match=f"holds {len(table)} trials but {conditions.name} names {len(table) - 1}"):
        importer_for(f"things={copy}").plan("01")


def test_things_table_written_by_pandas_is_read(tmp_path):
    pytest.importorskip("tables")  # PyTables: pandas' own HDF5 writer (mixed-type labels are pickled there)
    from bids_recon.glm.importers.things import PandasFrame

    values = np.arange(20, dtype=np.float32).reshape(5, 4)
    frame = pd.DataFrame(values, columns=range(4))
    frame.insert(0, "voxel_id", np.arange(5))
    frame.to_hdf(tmp_path / "sub-01_ResponseData.h5", key="data")
    table = PandasFrame(tmp_path / "sub-01_ResponseData.h5")
    assert (table.n_rows, table.n_columns) == (5, 4) and table.items == [0, 1, 2, 3]
    np.testing.assert_array_equal(table.read(np.array([4, 1]), np.array([2, 3])), values[[4, 1]][:, [2, 3]])


def test_bids_outputs_are_reused(layout_dataset, tmp_path):
    dataset = layout_dataset("nsd")
    truth, source = _truth(dataset)
    trials = truth["trials"].copy()
    trials["stim_id"] = trials["stim_file"]
    beta_set = BetaSet("01", ["nsd01"], [source], [trials], truth["mask"], np.diag([2.0, 2, 2, 1]))
    write_bids_outputs(tmp_path / "out", beta_set, task="nsdcore", space="func1pt8mm", resolution=None)
    plan, betas, read, brain = _read_all(f"bids={tmp_path / 'out'}")
    assert plan.space == "func1pt8mm" and plan.task == "nsdcore" and plan.resolution is None
    assert np.abs(betas - source).max() < 1e-6 and list(read["stim_id"]) == list(trials["stim_file"])
    assert len(plan.sessions[0].files) == trials["run"].nunique()

    # voxels=rois: the caller gives the ROI masks on the import's grid; the import reads their union in the brain
    from bids_recon.glm.importers.steps import import_mask

    asked = []
    half = np.zeros(brain.shape, bool)
    half[: brain.shape[0] // 2] = True

    def roi_masks(brain_img, source):
        asked.append((np.asarray(brain_img.dataobj) > 0, Path(source)))
        return {"left": half & brain, "corner": np.zeros(brain.shape, bool)}

    spec = f"bids={tmp_path / 'out'}:voxels=rois"
    mask, provenance = import_mask(spec, "01", None, ImportContext(), roi_masks)
    assert len(asked) == 1 and (asked[0][0] == brain).all() and asked[0][1] == plan.sessions[0].files[0].path
    assert ((np.asarray(mask.dataobj) > 0) == (half & brain)).all() and 0 < (half & brain).sum() < brain.sum()
    assert provenance["VoxelCount"] == int((half & brain).sum()) and "left, corner" in provenance["Voxels"]
    assert import_mask(f"bids={tmp_path / 'out'}", "01", None, ImportContext(), roi_masks)[1]["VoxelCount"] == \
        int(brain.sum()) and len(asked) == 1  # voxels=brain: the ROIs are never asked for
    with pytest.raises(UsageError, match="voxels=rois"):
        import_mask(spec, "01", None, ImportContext())


def test_a_truncated_beta_file_names_itself(tmp_path):
    data = np.zeros((3, 3, 3, 40), np.float32)
    path = tmp_path / "betas_session01.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(BadDataError, match=r"the file ends inside volume \d+ of 40 \(truncated\)"):
        list(iter_nifti_blocks(path, 1024))


# -- specs, sessions, settings --------------------------------------------------------------------------------------


def test_betas_specs_and_session_selection():
    assert split_betas_spec("nsd=/data/NSD:voxels=rois,scale=1/300") == ("nsd", "/data/NSD",
                                                                       {"voxels": "rois", "scale": "1/300"})
    assert split_betas_spec("glmsingle=/a:b/c") == ("glmsingle", "/a:b/c", {})  # ':' in a path is a path
    assert parse_betas("none") is None and parse_betas("") is None
    assert set(IMPORTERS) == {"nsd", "nsdsynthetic", "nsdimagery", "glmsingle", "bold5000", "things",
                             "bids"}
    for bad, words in (("nsd", "FORMAT=PATH"), ("fmriprep=/x", "unknown format 'fmriprep'"),
                       ("nsd=/x:colour=red", "unknown option 'colour'")):
        with pytest.raises(UsageError, match=words):
            parse_betas(bad)
    with pytest.raises(UsageError, match="voxels='some'"):
        importer_for("nsd=/x:voxels=some")
    with pytest.raises(UsageError, match="scale='-2'"):
        importer_for("nsd=/x:scale=-2")
    available = {f"nsd{n:02d}": n for n in range(1, 41)}
    assert wanted_sessions(["1-3", "ses-nsd05", "7"], available) == ["nsd01", "nsd02", "nsd03", "nsd05", "nsd07"]
    assert wanted_sessions(None, available) is None and len(wanted_sessions(["nsd01-nsd37"], available)) == 37
    with pytest.raises(BadDataError, match="session.s. 41 have no betas"):
        wanted_sessions(["40-41"], available)
    check_series({1: Path("a1"), 2: Path("a2")}, "a{n}", Path("."))
    with pytest.raises(BadDataError, match="a2 is absent between a1 and a3"):
        check_series({1: Path("a1"), 3: Path("a3")}, "a{n}", Path("."))


def test_betas_and_voxel_selection_settings_are_validated(tmp_path):
    from bids_recon.config import Config

    config = Config.from_dict({"workflow": {"glm": {"betas": "nsd=/data/NSD"}, "rois": {"voxel_selection": "top:500"}}})
    assert config.workflow.glm.betas == "nsd=/data/NSD"
    for key, value, words in (("glm", {"betas": "spm=/x"}, "unknown format 'spm'"),
                              ("rois", {"voxel_selection": "best"}, "ncsnr>T"),
                              ("rois", {"user_masks": {"early": "/r.nii.gz:early;x"}}, "neither a number nor a name")):
        with pytest.raises(UsageError, match=words) as caught:
            Config.from_dict({"workflow": {key: value}})
        assert int(caught.value.exit_code) == 64


# -- dataset ROIs -----------------------------------------------------------------------------------------------------


def test_roi_labels_by_name_number_and_sign_never_not_zero(layout_dataset, tmp_path):
    from bids_recon.rois import user_roi
    from bids_recon.rois.labels import color_table_for, parse_labels, read_color_table, split_roi_spec

    dataset = layout_dataset("nsd")
    root = dataset.bids_dir.parent
    streams = root / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "roi" / "streams.nii.gz"
    assert color_table_for(streams).name == "streams.mgz.ctab"
    table = read_color_table(color_table_for(streams))
    assert table["early"] == 1 and table["ventral"] == 5
    brain = nib.load(root / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "brainmask.nii.gz")
    labels = np.asarray(nib.load(streams).dataobj)
    assert (labels == -1).any()  # NSD's outside-cortex code is there
    early = user_roi(streams, brain, "early")
    assert (early == (labels == 1)).all() and (user_roi(streams, brain, "1") == early).all()
    both = user_roi(streams, brain, "early,ventral")
    assert (both == np.isin(labels, [1, 5])).all() and (user_roi(streams, brain, ">0") == both).all()
    assert not (both & (labels == -1)).any()  # > 0, never != 0
    assert parse_labels("1,ventral", streams).describe() == "labels 1 (early), 5 (ventral)"
    assert split_roi_spec("/d/streams.nii.gz:early") == ("/d/streams.nii.gz", "early")
    assert split_roi_spec("/d/x:y/streams.nii.gz") == ("/d/x:y/streams.nii.gz", "")
    with pytest.raises(BadDataError, match="not in the colour table .it has: unknown, early"):
        parse_labels("dorsal", streams)
    lonely = tmp_path / "lonely.nii.gz"
    shutil.copy(streams, lonely)
    with pytest.raises(MissingInputError, match="need a colour table"):
        parse_labels("early", lonely)


def test_rois_on_another_grid_are_resampled_or_refused_naming_both_files(layout_dataset, tmp_path):
    from bids_recon.rois import user_roi

    root = layout_dataset("nsd").bids_dir.parent
    pp = root / "nsddata" / "ppdata" / "subj01" / "func1pt8mm"
    brain = nib.load(pp / "brainmask.nii.gz")
    betas = root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR" / \
        "betas_session01.nii.gz"
    labels = np.asarray(nib.load(pp / "roi" / "streams.nii.gz").dataobj)
    fine = np.repeat(np.repeat(np.repeat(labels, 2, 0), 2, 1), 2, 2)  # the same ROI at twice the resolution
    affine = brain.affine.copy()
    affine[:3, :3] /= 2
    affine[:3, 3] -= np.diag(brain.affine)[:3] / 4
    nib.save(nib.Nifti1Image(fine, affine), tmp_path / "streams.nii.gz")
    shutil.copy(root / "nsddata" / "freesurfer" / "fsaverage" / "label" / "streams.mgz.ctab", tmp_path)
    resampled = user_roi(tmp_path / "streams.nii.gz", brain, "early", betas)
    assert (resampled == (labels == 1)).mean() > 0.98
    far = affine.copy()
    far[:3, 3] += 400.0  # another space: nothing overlaps
    nib.save(nib.Nifti1Image(fine, far), tmp_path / "streams.nii.gz")
    with pytest.raises(BadDataError) as caught:
        user_roi(tmp_path / "streams.nii.gz", brain, "early", betas)
    assert "streams.nii.gz" in str(caught.value) and betas.name in str(caught.value)
    assert "differs from the betas' grid" in str(caught.value) and int(caught.value.exit_code) == 65


def test_voxel_selection_uses_training_repeats_only():
    from bids_recon.rois.selection import parse_voxel_selection, select_voxels

    rng = np.random.default_rng(0)
    n_stim, n_vox = 60, 40
    signal = rng.normal(size=(n_stim, n_vox)) * np.r_[np.full(10, 2.0), np.zeros(30)]  # 10 reliable voxels
    stim = np.repeat(np.arange(n_stim), 3)
    betas = (signal[stim] + rng.normal(size=(len(stim), n_vox))).astype(np.float32)
    trials = pd.DataFrame({"stim_id": stim.astype(str), "split": np.where(stim < 50, "train", "test")})
    brain = np.ones((5, 8, 1), bool)
    masks = {"roi": brain.copy()}
    kept, report = select_voxels(masks, brain, betas, trials, parse_voxel_selection("ncsnr>0.5"))
    assert set(np.flatnonzero(kept["roi"].ravel())) == set(range(10)) and report["roi"]["VoxelsAfter"] == 10
    top, _ = select_voxels(masks, brain, betas, trials, parse_voxel_selection("top:5"))
    assert top["roi"].sum() == 5 and set(np.flatnonzero(top["roi"].ravel())) <= set(range(10))
    scrambled = betas.copy()
    scrambled[trials["split"] == "test"] = rng.normal(size=scrambled[trials["split"] == "test"].shape)
    again, _ = select_voxels(masks, brain, scrambled, trials, parse_voxel_selection("ncsnr>0.5"))
    assert (again["roi"] == kept["roi"]).all()  # the test set's responses play no part
    once = trials.drop_duplicates("stim_id").index.to_numpy()
    with pytest.raises(BadDataError, match="training stimuli shown at least twice"):
        select_voxels(masks, brain, betas[once], trials.iloc[once].reset_index(drop=True),
                      parse_voxel_selection("top:5"))


# -- through the command line -----------------------------------------------------------------------------------------


RECIPE = ROOT / "docs" / "recipes" / "takagi2023.md"


def _recipe_command(page: Path = RECIPE) -> list[str]:
    """A page's first ``bids_recon`` command (in its bash blocks), split into arguments."""
    import shlex

    text = page.read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.strip().startswith("bids_recon "):
                return shlex.split(line)[1:]
    raise AssertionError(f"{page.name} has no bids_recon command")


def _mock_nsd(layout_dataset, target: Path, n_sessions: int = 37) -> Path:
    """The simulator's NSD tree with its one session repeated to ``n_sessions`` (betas and responses)."""
    layout_copy(layout_dataset("nsd"), target)
    folder = target / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
    responses = target / "nsddata" / "ppdata" / "subj01" / "behav" / "responses.tsv"
    table = pd.read_csv(responses, sep="\t")
    for k in range(2, n_sessions + 1):
        shutil.copy(folder / "betas_session01.nii.gz", folder / f"betas_session{k:02d}.nii.gz")
    (folder / "betas_session01.hdf5").unlink()
    pd.concat([table.assign(SESSION=k) for k in range(1, n_sessions + 1)]).to_csv(responses, sep="\t", index=False)
    (target / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat").unlink()  # one subject's mock: no design
    return target


def test_the_recipes_command_checks_on_a_mock_nsd_tree(layout_dataset, tiny_sd, tmp_path, monkeypatch):
    from bids_recon.cli.run import main

    args = _recipe_command()
    root = _mock_nsd(layout_dataset, tmp_path / "NSD")
    config = RECIPE.with_name("takagi2023.toml")
    replaced = [str(root) if a == "/data/NSD" else str(tmp_path / "out") if a.startswith("/data/") else
                str(config) if a.endswith("takagi2023.toml") else a for a in args]
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(layout_dataset("nsd").templateflow_dir))
    code = main([*replaced, "--check-only", "--model", str(tiny_sd), "-w", str(tmp_path / "work")])
    log = next((tmp_path / "out" / "logs").rglob("bids_recon.log")).read_text()
    assert code == 0, log[-3000:]
    assert "37 session(s)" in log and "inputs and workflow" in log and "nothing was computed" in log
    saved = next((tmp_path / "out" / "logs").rglob("bids_recon.toml")).read_text()
    assert 'solver = "himalaya"' in saved and 'betas = "nsd=' in saved and "streams.nii.gz:early" in saved
    # the NSD page's import command, as written, on the same tree: NSD's own ROIs, counted in the log
    page = [str(root) if a == "/data/NSD" else str(tmp_path / "out2") if a.startswith("/data/") else a
            for a in _recipe_command(RECIPE.parents[1] / "datasets" / "nsd.md")]
    assert main([*page, "--check-only", "-w", str(tmp_path / "work2")]) == 0
    log = next((tmp_path / "out2" / "logs").rglob("bids_recon.log")).read_text()
    assert "37 session(s)" in log and "nothing was computed" in log
    assert "ROI earlyvisual: streams.nii.gz (label 1 (early))" in log and "brainmask.nii.gz keeps" in log


@pytest.mark.slow
def test_a_glm_runs_betas_exported_to_glmsingle_import_to_the_same_decoders_and_metrics(tiny_run, tmp_path):
    """Our GLM's betas written as GLMsingle's outputs and imported back (--betas glmsingle=) give the first run's
    decoder and metrics: float32 betas, the same events, so the tolerance is float rounding (1e-6)."""
    from bids_recon.sim.betas import export_betas
    from tests.conftest import run_cli

    assert tiny_run["participant"].returncode == 0, tiny_run["participant"].stderr[-3000:]
    dataset, first = tiny_run["dataset"], tiny_run["out"]
    export_betas(first, "01", "glmsingle", tmp_path / "glmsingle")
    out = tmp_path / "out"
    proc = run_cli([str(dataset.bids_dir), str(out), "participant", "--participant-label", "01", "--betas",
                    f"glmsingle={tmp_path / 'glmsingle'}", "-w", str(tmp_path / "work"), "--nprocs", "2",
                    "--skip-bids-validation"], dataset.templateflow_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for pattern in ("sub-01/decoding/*_decoder.npz", "sub-01/decoding/*_features.npz"):
        a, b = (np.load(next(root.glob(pattern))) for root in (first, out))
        for key in a.files:
            if a[key].dtype.kind == "f":
                np.testing.assert_allclose(b[key], a[key], atol=1e-6, err_msg=key)
    metrics = [pd.read_csv(next(root.glob("sub-01/recon/*_metrics.tsv")), sep="\t") for root in (first, out)]
    np.testing.assert_allclose(metrics[1]["value"], metrics[0]["value"], atol=1e-6, equal_nan=True)
    report = (out / "sub-01.html").read_text()
    assert "Single-trial betas (imported)" in report and "TYPED_FITHRF_GLMDENOISE_RR.npy" in report
    assert "imported" in next((out / "logs").rglob("CITATION.md")).read_text()


@pytest.mark.slow
def test_a_bad_import_stops_the_command_line_before_any_node(layout_dataset, tmp_path):
    """Through the command line: exit 65, both files named, no workflow node run."""
    from tests.bad_inputs import _nsd_trial_the_betas_lack
    from tests.conftest import run_cli

    dataset = layout_dataset("nsd")
    _, root = layout_copy(dataset, tmp_path / "NSD")
    named, other, words = _nsd_trial_the_betas_lack(root / "nsddata_rawdata", root)
    proc = run_cli([str(root), str(tmp_path / "out"), "participant", "--dataset", "nsd", "-w", str(tmp_path / "work")],
                   dataset.templateflow_dir)
    assert proc.returncode == 65, proc.stderr[-3000:]
    assert named.name in proc.stderr and other in proc.stderr and all(w in proc.stderr for w in words)
    assert not list((tmp_path / "work").rglob("result_*.pklz"))


def test_the_nsd_preset_imports_from_the_download_root_unless_the_glm_is_asked_for(layout_dataset, tmp_path):
    from bids_recon.cli.parser import build_parser
    from bids_recon.cli.run import build_config

    root = layout_dataset("nsd").bids_dir.parent

    def config(*flags):
        parser = build_parser()
        return build_config(parser.parse_args([str(root), str(tmp_path / "out"), "participant", "--dataset", "nsd",
                                               *flags]), parser)

    imports = config()
    assert imports.workflow.glm.betas == f"nsd={root}:voxels=rois" and imports.workflow.space == "func1pt8mm"
    assert imports.workflow.rois.user_masks["highervisual"].endswith("subj{subject}/func1pt8mm/roi/streams.nii.gz"
                                                                     ":ventral")
    assert imports.workflow.stimuli.captions == "nsddata_stimuli/stimuli/nsd/annotations"  # from the root
    for flags in (["--betas", "none"], ["-d", f"fmriprep={tmp_path}"]):
        glm = config(*flags)
        assert glm.workflow.glm.betas in ("", "none") and glm.workflow.rois.user_masks == {}
        assert glm.workflow.space == "MNI152NLin2009cAsym" and glm.workflow.stimuli.resolver == "nsd"
