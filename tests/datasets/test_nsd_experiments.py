"""NSD-synthetic and NSD-Imagery: the stand-in writer's files read back by their importers (betas within int16
rounding, trials in beta order, imagery conditions), their stimulus resolvers, the presets, and the errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_recon.datasets import get_preset
from bids_recon.design.split import describe_split, mark_imported_split, parse_test_split
from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.features.params import StimulusParams
from bids_recon.features.resolvers import resolver_for
from bids_recon.glm.importers import importer_for, parse_betas
from bids_recon.sim.betas import NSD_SCALE, BetaSet, _save, write_nsd_rois
from bids_recon.sim.nsdexperiments import (
    IMAGERY_LETTERS,
    imagery_runs,
    synthetic_design,
    write_nsdimagery,
    write_nsdsynthetic,
)

INT16_ERROR = 0.5 / NSD_SCALE + 1e-6
SHAPE = (5, 6, 4)


@pytest.fixture
def nsd_root(tmp_path) -> Path:
    """An NSD stand-in root as ``bids_recon-sim --layout nsd`` leaves it, reduced to what these importers read:
    sub-01's brain mask and streams ROIs (early and ventral)."""
    mask = np.zeros(SHAPE, bool)
    mask[1:4, 1:5, 1:3] = True
    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    _save(mask.astype(np.int16), affine, tmp_path / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "brainmask.nii.gz")
    early = np.zeros(SHAPE, bool)
    early[1:4, 1:3, 1:3] = True
    beta_set = BetaSet("01", [], [], [], mask, affine)
    write_nsd_rois(tmp_path, beta_set, early, mask & ~early)
    (tmp_path / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR").mkdir(parents=True)
    return tmp_path


def _read(spec: str):
    importer = importer_for(spec)
    plan = importer.plan("01")
    brain = np.asarray(importer.brain_mask(plan).dataobj) > 0
    betas = np.asarray(importer.read_session(plan, plan.sessions[0], brain,
                                             Path(tempfile.mkdtemp()) / "betas.npy", block_bytes=2048))
    return importer, plan, betas


def _betas(n: int, root: Path, seed: int = 0) -> np.ndarray:
    import nibabel as nib

    mask = np.asarray(nib.load(root / "nsddata/ppdata/subj01/func1pt8mm/brainmask.nii.gz").dataobj) > 0
    return np.random.default_rng(seed).normal(0, 2, (n, int(mask.sum()))).astype(np.float32)


def test_nsdsynthetic_betas_trials_and_images_read_back(nsd_root):
    order, pattern = synthetic_design(n_runs=8, per_run=5, n_images=230, seed=1)
    order[7] = 225  # a colour image of the participant's own
    betas = _betas(len(order), nsd_root)
    rng = np.random.default_rng(2)
    shared = rng.integers(0, 256, (220, 6, 8, 3), dtype=np.uint8)  # not square, as NSD-synthetic's
    colour = rng.integers(0, 256, (64, 6, 8, 3), dtype=np.uint8)
    write_nsdsynthetic(nsd_root, "01", betas, order, pattern, shared, colour, forms=("nii", "hdf5"))

    for form in ("nii", "hdf5"):
        importer, plan, read = _read(f"nsdsynthetic={nsd_root}:file={form}")
        assert plan.sessions[0].files[0].name == f"betas_nsdsynthetic.{'nii.gz' if form == 'nii' else 'hdf5'}"
        assert plan.space == "func1pt8mm" and plan.task == "nsdsynthetic" and plan.scale == pytest.approx(1 / 300)
        assert plan.mask_file.name == "brainmask.nii.gz"
        assert np.abs(read - betas).max() <= INT16_ERROR
    trials, meta = plan.sessions[0].trials, plan.sessions[0].metadata
    assert list(meta["image_number"]) == list(order)
    assert trials["stim_id"][7] == "225_subj01" and trials["stim_id"][0] == str(order[0])
    assert list(trials["run"]) == [f"{r:02d}" for r in np.repeat(np.arange(1, 9), 5)]
    assert list(meta["task"][:10]) == ["fixation"] * 5 + ["oneback"] * 5
    assert meta["oneback_repeat"].to_numpy().nonzero()[0].tolist() == [4 + 5 * k for k in range(8)]
    assert (trials["split"] == "train").all()
    assert (mark_imported_split(trials, meta, StimulusParams(test_split="all"))["split"] == "test").all()

    resolver = resolver_for(nsd_root, StimulusParams(resolver="nsdsynthetic"))
    assert np.allclose(resolver.load_image("3"), shared[2][:, 1:7] / 255.0)  # centre-cropped to 6 x 6
    assert np.allclose(resolver.load_image("225_subj01"), colour[4][:, 1:7] / 255.0)
    assert resolver.load_image("3", 4).shape == (4, 4, 3)
    for bad in ("225", "17_subj01", "0", "x"):
        with pytest.raises(BadDataError, match="not an NSD-synthetic image id"):
            resolver.check(bad)
    assert resolver.category("3") is None  # no image information table: captions need one, or a TSV
    info = nsd_root / "nsddata/experiments/nsdsynthetic/nsdsyntheticimageinformation.csv"
    pd.DataFrame({"Image": ["a", "b", "c"], "Image subclass": ["white noise", "pink noise", "scene"],
                  "Image class": ["noise", "noise", "scene"]}).to_csv(info, index=False)
    assert resolver_for(nsd_root, StimulusParams(resolver="nsdsynthetic")).category("2") == "pink noise"


def test_nsdimagery_conditions_cues_and_beta_order(nsd_root):
    runs = imagery_runs(seed=3)
    betas = _betas(720, nsd_root, seed=4)
    images = {k: np.full((8, 8, 3), 10 * i, np.uint8) for i, k in enumerate(IMAGERY_LETTERS["A"] + ["W"])}
    _, rows = write_nsdimagery(nsd_root, "01", betas, runs, images)
    importer, plan, read = _read(f"nsdimagery={nsd_root}")
    assert plan.sessions[0].label == "nsdimagery" and plan.sessions[0].files[0].name == "betas_nsdimagery.hdf5"
    assert np.abs(read - betas).max() <= INT16_ERROR
    trials, meta = plan.sessions[0].trials, plan.sessions[0].metadata
    assert len(trials) == 720
    assert meta["condition"].value_counts().to_dict() == {"attention": 288, "imagery": 288, "vision": 144}
    assert list(meta["target"]) == list(rows["CONDITION"]) and list(meta["cue"]) == list(rows["CUE"])
    assert list(meta["run_name"][[0, 48, 49, 144, 576]]) == ["visA", "attA", "attA", "imgA_1", "imgA_2"]
    assert list(meta["phase"][48:52]) == ["cue", "detection", "cue", "detection"]
    assert list(trials["run"][[0, 48, 719]]) == ["01", "02", "12"]
    first = runs["visA"]["CONDITION"].iloc[0]
    assert trials["stim_id"][0] == f"vision-{first}" and trials["stim_id"][144].startswith("imagery-")
    vision_cues = meta[meta["condition"] == "vision"]
    assert 0 < (vision_cues["cue"] != vision_cues["target"]).sum() < 144  # vision cues mismatch half the time
    decoded = trials["split"] != "none"
    assert set(meta["condition"][decoded]) == {"vision", "imagery"}
    assert set(meta["stimulus_set"][decoded]) == {"A", "B"} and decoded.sum() == 2 * 48 + 4 * 48
    assert not decoded[meta["condition"] == "attention"].any() and not decoded[meta["stimulus_set"] == "C"].any()

    only = importer_for(f"nsdimagery={nsd_root}:decode=imagery").plan("01").sessions[0]
    assert set(only.metadata["condition"][only.trials["split"] != "none"]) == {"imagery"}
    with pytest.raises(UsageError, match="decode="):
        importer_for(f"nsdimagery={nsd_root}:decode=attention").plan("01")

    resolver = resolver_for(nsd_root, StimulusParams(resolver="nsdimagery"))
    letter = IMAGERY_LETTERS["A"][2]
    assert np.allclose(resolver.load_image(f"imagery-{letter}"), 20 / 255.0)
    assert resolver.path("vision-W").name == "shared0385_nsd28752.png"
    assert resolver.category("vision-H") == "bar" and resolver.category("vision-E") == "cross"
    with pytest.raises(BadDataError, match="set C"):
        resolver.check("imagery-S")
    with pytest.raises(MissingInputError, match="target image"):
        resolver.check("vision-K")


def test_presets_resolve_settings(nsd_root):
    for name, fmt in (("nsdsynthetic", "nsdsynthetic"), ("nsdimagery", "nsdimagery")):
        values = get_preset(name).settings_for(nsd_root)
        assert values["workflow.glm.betas"] == f"{fmt}={nsd_root.absolute()}:voxels=rois"
        assert values["workflow.stimuli.resolver"] == name and values["execution.task_id"] == name
        assert values["workflow.stimuli.test_split"] == "all" and values["workflow.space"] == "func1pt8mm"
        assert values["workflow.rois.user_masks"]["earlyvisual"].endswith("subj{subject}/func1pt8mm/roi/"
                                                                          "streams.nii.gz:early")
        assert values["workflow.rois.user_masks"]["highervisual"].endswith(":ventral")
        assert "workflow.glm.betas" not in get_preset(name).settings_for(nsd_root / "nowhere" / "deeper")
        parse_betas(values["workflow.glm.betas"])
    assert parse_test_split("all").name == "all" and "Every decoded trial" in describe_split(2, "all")


def test_missing_files_are_errors_naming_them(nsd_root):
    with pytest.raises(MissingInputError, match="betas_nsdsynthetic.nii.gz or betas_nsdsynthetic.hdf5") as info:
        importer_for(f"nsdsynthetic={nsd_root}").plan("01")
    assert info.value.exit_code == 66
    order, pattern = synthetic_design(n_runs=8, per_run=3, seed=5)
    write_nsdsynthetic(nsd_root, "01", _betas(24, nsd_root), order, pattern)
    design = nsd_root / "nsddata/experiments/nsdsynthetic/nsdsynthetic_expdesign.mat"
    from scipy.io import savemat

    savemat(design, {"masterordering": order[:-1].astype(float)[None, :]})
    with pytest.raises(BadDataError, match="holds 24 betas but the design .*nsdsynthetic_expdesign.mat.* lists 23"):
        importer_for(f"nsdsynthetic={nsd_root}").plan("01")
    design.unlink()
    with pytest.raises(MissingInputError, match="nsdsynthetic_expdesign.mat does not exist") as info:
        importer_for(f"nsdsynthetic={nsd_root}").plan("01")
    assert info.value.exit_code == 66 and str(design) in str(info.value)

    write_nsdimagery(nsd_root, "01", _betas(720, nsd_root))
    tsv = nsd_root / "nsddata/bdata/nsdimagery/nsdimagery_subj01_imgB_2.tsv"
    tsv.unlink()
    with pytest.raises(MissingInputError, match="nsdimagery_subj01_imgB_2.tsv does not exist"):
        importer_for(f"nsdimagery={nsd_root}").plan("01")
    with pytest.raises(UsageError):
        parse_betas(f"nsdimagery={nsd_root}:design=responses")
