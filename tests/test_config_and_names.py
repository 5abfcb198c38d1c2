"""Configuration round trip, output names, exit codes."""

import json

import pytest

from bids_recon.bids.derivatives import BIDSIGNORE, SubjectOutputs, build_name, sanitize_label
from bids_recon.config import Config
from bids_recon.errors import BadDataError, ExitCode, UsageError, exit_code_for


def test_config_roundtrip(tmp_path):
    config = Config()
    config.workflow.decoding.n_components = 12
    config.workflow.rois.user_masks = {"earlyvisual": "/data/v1.nii.gz"}
    path = config.save(tmp_path / "c.toml")
    loaded = Config.load(path)
    assert loaded.workflow.decoding.n_components == 12
    assert loaded.workflow.rois.user_masks == {"earlyvisual": "/data/v1.nii.gz"}
    assert loaded.to_dict()["workflow"] == config.to_dict()["workflow"]


def test_config_unknown_key_is_a_usage_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[workflow.decoding]\nn_componnets = 3\n")
    with pytest.raises(UsageError, match="n_componnets"):
        Config.load(path)


def test_names_follow_entity_order():
    names = SubjectOutputs("01", "images", "MNI152NLin2009cAsym", "2")
    assert names.betas("02", "03").as_posix() == (
        "sub-01/ses-02/func/sub-01_ses-02_task-images_run-03_space-MNI152NLin2009cAsym_res-2_"
        "desc-singletrial_stat-effect_statmap.nii.gz")
    assert names.roi_mask("earlyvisual", "HOCPA").name == (
        "sub-01_task-images_space-MNI152NLin2009cAsym_res-2_label-earlyvisual_desc-HOCPA_mask.nii.gz")
    assert build_name({"sub": "01", "desc": "x", "task": "t"}, "bold", ".nii") == "sub-01_task-t_desc-x_bold.nii"
    assert sanitize_label("stim-0001.png") == "stim0001png"
    assert "figures" in BIDSIGNORE and "*_statmap.*" in BIDSIGNORE
    with pytest.raises(ValueError):
        build_name({"foo": "1"}, "bold", ".nii")


def test_exit_codes():
    assert exit_code_for(BadDataError("x")) == ExitCode.BAD_DATA == 65
    assert exit_code_for(RuntimeError("x")) == ExitCode.FAILURE
    assert json.dumps(int(ExitCode.MISSING_INPUT)) == "66"
