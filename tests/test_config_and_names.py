"""Output names, exit codes and the configuration file's round trip."""

import json

import pytest

from bids_recon.bids.derivatives import BIDSIGNORE
from bids_recon.config import Config
from bids_recon.errors import BadDataError, ExitCode, UsageError, exit_code_for
from bids_recon.generate.card import generator_card
from bids_recon.naming import (
    SubjectOutputs,
    build_name,
    find_outputs,
    parse_name,
    sanitize_label,
    sidecar_path,
)


def test_config_roundtrip(tmp_path):
    config = Config()
    config.workflow.generate.linear.n_components = 12
    config.workflow.rois.user_masks = {"earlyvisual": "/data/v1.nii.gz"}
    config.workflow.resolution = None  # no res- entity: written as "none", read back as None
    config.workflow.generate.diffusion.variants = ["zc"]
    path = config.save(tmp_path / "c.toml")
    loaded = Config.load(path)
    assert loaded.workflow.generate.linear.n_components == 12
    assert loaded.workflow.rois.user_masks == {"earlyvisual": "/data/v1.nii.gz"}
    assert loaded.workflow.resolution is None
    assert loaded.to_dict()["workflow"] == config.to_dict()["workflow"]
    assert loaded.to_dict()["nipype"] == config.to_dict()["nipype"]


def test_config_unknown_key_is_a_usage_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[workflow.generate.linear]\nn_componnets = 3\n")
    with pytest.raises(UsageError, match=r"workflow\.generate\.linear\.n_componnets.*did you mean "
                                         r"'workflow\.generate\.linear\.n_components'"):
        Config.load(path)


def test_names_follow_entity_order():
    names = SubjectOutputs("01", "images", "MNI152NLin2009cAsym", "2")
    assert names.betas("02", "03").as_posix() == (
        "sub-01/ses-02/func/sub-01_ses-02_task-images_run-03_space-MNI152NLin2009cAsym_res-2_"
        "desc-singletrial_stat-effect_statmap.nii.gz")
    assert names.design("02", "03").name == (
        "sub-01_ses-02_task-images_run-03_space-MNI152NLin2009cAsym_res-2_desc-singletrial_design.tsv")
    assert names.roi_mask("earlyvisual", "HOCPA").name == (
        "sub-01_task-images_space-MNI152NLin2009cAsym_res-2_label-earlyvisual_desc-HOCPA_mask.nii.gz")
    assert names.roi_mask("v1", None).name == "sub-01_task-images_space-MNI152NLin2009cAsym_res-2_label-v1_mask.nii.gz"
    diffusion = generator_card("diffusion")  # the writer names the images by the card's variants
    assert names.recon_image("img/cat.png", diffusion.image_desc("zc", 1)).as_posix() == (
        "sub-01/recon/sub-01_task-images_stim-cat_desc-diffusionzcsample2_recon.png")
    assert [diffusion.image_desc(v, 0) for v in ("z", "c")] == ["diffusionz", "diffusioncsample1"]
    assert generator_card("linear").image_desc() == "linear"
    assert build_name({"sub": "01", "desc": "x", "task": "t"}, "bold", ".nii") == "sub-01_task-t_desc-x_bold.nii"
    assert sanitize_label("stim-0001.png") == "stim0001png"
    assert "figures" in BIDSIGNORE and "*_statmap.*" in BIDSIGNORE
    with pytest.raises(ValueError):
        build_name({"foo": "1"}, "bold", ".nii")
    with pytest.raises(BadDataError, match="no letters or digits"):
        names.recon_image("__.png", "linear")


def test_sidecar_and_parse_invert_the_builder(tmp_path):
    names = SubjectOutputs("01", "images", "MNI152NLin2009cAsym", None)
    path = names.betas("02", "03")
    assert sidecar_path(path).name == path.name.replace(".nii.gz", ".json")
    assert sidecar_path(names.decoder("earlyvisual", "imagepca")).name.endswith("_decoder.json")
    entities, suffix, extension = parse_name(path)
    assert (entities["ses"], entities["run"], suffix, extension) == ("02", "03", "statmap", ".nii.gz")
    assert "res" not in entities
    for subject in ("01", "02"):  # the group level finds outputs through the same table
        out = tmp_path / SubjectOutputs(subject, "images", "MNI152NLin2009cAsym", "2").metrics("linear")
        out.parent.mkdir(parents=True)
        out.write_text("metric\tvalue\n")
    (tmp_path / "sub-01" / "recon" / "sub-01_task-images_desc-linear_metrics.json").write_text("{}")
    found = find_outputs(tmp_path, "metrics")
    assert [e["sub"] for _, e in found] == ["01", "02"] and all(e["desc"] == "linear" for _, e in found)
    assert [e["sub"] for _, e in find_outputs(tmp_path, "metrics", sub="02")] == ["02"]


def test_exit_codes():
    assert exit_code_for(BadDataError("x")) == ExitCode.BAD_DATA == 65
    assert exit_code_for(RuntimeError("x")) == ExitCode.FAILURE
    assert json.dumps(int(ExitCode.MISSING_INPUT)) == "66"
