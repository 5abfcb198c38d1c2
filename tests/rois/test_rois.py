"""ROIs that tell the truth, in-process and on tiny arrays: user masks combined (union) with every voxel counted
and a sidecar naming the real files; the atlas only in its own space; repeated ``--roi-mask`` and the config file's
list; the presets that find a dataset's masks and space; the refusals of the preflight (atlas on T1w data, BOLD
of another space) naming what to type.

The same behaviour end to end through the command line, on each dataset's simulated layout, is in
tests/datasets/test_layouts.py.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_recon.errors import BadDataError, BidsReconError, MissingInputError
from bids_recon.rois import RoiParams, build_rois, check_atlas_space
from tests.conftest import cli_config


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), path)
    return path


@pytest.fixture
def grid(tmp_path):
    """A 10^3 BOLD grid of 2 mm with a brain mask (x < 8), an LH mask on that grid with 4 voxels outside the brain,
    and an RH mask on a 1 mm grid (each BOLD voxel as 2x2x2) reaching 2 BOLD voxels beyond the field of view and
    holding one fine voxel that no BOLD voxel samples."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    brain = np.zeros((10, 10, 10), bool)
    brain[:8] = True
    lh = np.zeros_like(brain)
    lh[1:4, 2:5, 2:5] = True  # 27 voxels, all in the brain
    lh[8:10, 0, 0:2] = True  # 4 voxels outside the brain mask
    rh_bold = np.zeros((12, 10, 10), bool)  # on a grid that reaches past the BOLD field (x up to 11)
    rh_bold[5:7, 2:5, 2:5] = True  # 18 voxels, in the brain; overlap with lh: none
    rh_bold[3, 2:5, 2] = True  # 3 voxels shared with lh (x=3)
    rh_bold[10:12, 6, 6] = True  # 2 BOLD voxels outside the field of view
    fine = np.repeat(np.repeat(np.repeat(rh_bold, 2, 0), 2, 1), 2, 2)
    fine[13, 15, 15] = True  # one fine voxel of BOLD voxel (6, 7, 7), not the one its centre samples
    fine_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    fine_affine[:3, 3] = -0.25  # fine voxels 2k, 2k + 1 make BOLD voxel k, whose centre samples 2k
    return {"brain": nib.Nifti1Image(brain.astype(np.uint8), affine), "brain_array": brain,
            "lh": _save(lh, affine, tmp_path / "ds" / "sourcedata" / "sub-01_mask_LH_V1.nii.gz"),
            "rh": _save(fine, fine_affine, tmp_path / "ds" / "sourcedata" / "sub-01_mask_RH_V1.nii.gz"),
            "lh_array": lh, "rh_array": rh_bold[:10], "root": tmp_path / "ds"}


def test_masks_of_one_roi_are_combined_with_every_voxel_counted_and_their_sources_named(grid, caplog):
    params = RoiParams(user_masks={"earlyvisual": [str(grid["lh"]), str(grid["rh"])],
                                   "highervisual": str(grid["lh"])}, min_voxels=5)
    with caplog.at_level(logging.INFO, logger="bids_recon.rois"):
        masks, sources = build_rois(grid["brain"], params, space="T1w")  # user masks: any space
    brain = grid["brain_array"]
    union = (grid["lh_array"] | grid["rh_array"]) & brain
    assert (masks["earlyvisual"] == union).all() and int(union.sum()) == 27 + 18  # 3 shared voxels counted once
    source = sources["earlyvisual"]
    lh, rh = source.files
    assert (lh.selected, lh.resampled, lh.in_brain, lh.outside_brain, lh.same_grid) == (31, 31, 27, 4, True)
    # 23 BOLD voxels x 8 fine voxels + 1: the 2 beyond the field of view are 16 fine voxels; the lone fine voxel's
    # BOLD voxel samples another one, so it is lost in resampling
    assert (rh.selected, rh.outside_fov, rh.not_sampled, rh.resampled, rh.in_brain) == (185, 16, 1, 21, 21)
    assert source.voxels == 45 and source.outside_brain == 4
    sidecar = source.sidecar({"raw": grid["root"]})
    assert sidecar["Union"] is True and sidecar["Sources"] == ["bids:raw:sourcedata/sub-01_mask_LH_V1.nii.gz",
                                                               "bids:raw:sourcedata/sub-01_mask_RH_V1.nii.gz"]
    assert [f["Sha256"] for f in sidecar["Files"]] == [hashlib.sha256(p.read_bytes()).hexdigest()
                                                       for p in (grid["lh"], grid["rh"])]
    assert sidecar["Files"][1]["Resampling"].startswith("nearest neighbour from the file's grid 24x20x20 (1x1x1 mm)")
    assert "Atlas" not in sidecar and "Template" not in sidecar  # a user mask claims no atlas
    assert sources["highervisual"].sidecar()["Sources"] == [grid["lh"].as_uri()]  # outside every dataset
    assert ("ROI earlyvisual: union of 2 files: sub-01_mask_LH_V1.nii.gz (labels > 0): 31 voxels on the BOLD grid; "
            "27 inside the brain mask, 4 outside it dropped") in caplog.text
    assert ("16 outside the BOLD grid's field of view, 1 in BOLD voxels the nearest-neighbour resampling did not "
            "take") in caplog.text and "union 45 voxels (3 in more than one file)" in caplog.text


def test_the_atlas_is_refused_outside_its_space_naming_the_space_and_the_rois_to_give(grid):
    with pytest.raises(BadDataError) as caught:
        build_rois(grid["brain"], RoiParams(), space="T1w")  # refused before any TemplateFlow file is read
    message = str(caught.value)
    assert int(caught.value.exit_code) == 65 and "space T1w" in message and "MNI152NLin2009cAsym" in message
    assert "--roi-mask earlyvisual=PATH --roi-mask highervisual=PATH" in message
    with pytest.raises(BadDataError, match=r"ROI\(s\) highervisual would come.*--roi-mask highervisual=PATH\)? "):
        build_rois(grid["brain"], RoiParams(user_masks={"earlyvisual": str(grid["lh"])}), space="func1pt8mm")
    check_atlas_space(["earlyvisual"], "MNI152NLin2009cAsym", "HOCPA", "MNI152NLin2009cAsym")  # its own space
    check_atlas_space(["earlyvisual"], "MNI152NLin2009cAsym", "HOCPA", None)  # not known here: the node checks
    check_atlas_space([], "MNI152NLin2009cAsym", "HOCPA", "T1w")  # every ROI a user mask
    with pytest.raises(MissingInputError, match="ROI 'earlyvisual': .*ROI mask does not exist"):
        build_rois(grid["brain"], RoiParams(user_masks={"earlyvisual": [str(grid["lh"]), "/nowhere/rh.nii.gz"],
                                                        "highervisual": str(grid["lh"])}))


_config = cli_config


def test_repeated_roi_mask_flags_are_a_union_and_a_flag_replaces_the_files_entry(tmp_path):
    from bids_recon.config import Config

    config = _config(tmp_path, "--roi-mask", "earlyvisual=/m/lh.nii.gz", "--roi-mask", "highervisual=/m/hv.nii.gz:2",
                     "--roi-mask", "earlyvisual=/m/rh.nii.gz:1,2")
    assert config.workflow.rois.user_masks == {"earlyvisual": ["/m/lh.nii.gz", "/m/rh.nii.gz:1,2"],
                                               "highervisual": "/m/hv.nii.gz:2"}  # one file stays a text
    config.save(tmp_path / "saved.toml")
    assert Config.load(tmp_path / "saved.toml").workflow.rois.user_masks == config.workflow.rois.user_masks
    toml = ('[workflow.rois.user_masks]\nearlyvisual = ["/f/lh.nii.gz", "/f/rh.nii.gz"]\n'
            'highervisual = "/f/hv.nii.gz"\n')
    assert _config(tmp_path, toml=toml).workflow.rois.user_masks == {
        "earlyvisual": ["/f/lh.nii.gz", "/f/rh.nii.gz"], "highervisual": "/f/hv.nii.gz"}
    flagged = _config(tmp_path, "--roi-mask", "earlyvisual=/m/v1.nii.gz", toml=toml)
    assert flagged.workflow.rois.user_masks == {"earlyvisual": "/m/v1.nii.gz", "highervisual": "/f/hv.nii.gz"}
    with pytest.raises(BidsReconError, match="ROI 'earlyvisual' lists no file"):
        _config(tmp_path, toml="[workflow.rois.user_masks]\nearlyvisual = []\n")
    with pytest.raises(BidsReconError, match="neither a number nor a name"):
        _config(tmp_path, toml='[workflow.rois.user_masks]\nearlyvisual = ["/a.nii.gz", "/b.nii.gz:x;y"]\n')


def _kamitani_tree(root: Path, fmriprep_spaces: tuple[str, ...]) -> Path:
    """GOD's layout in names only: per-hemisphere masks in sourcedata/ and fMRIPrep BOLD in the given spaces."""
    for area in ("V1d", "V1v", "V2d", "V3v", "hV4", "LOC", "FFA", "PPA"):
        for hemi in ("LH", "RH"):
            path = root / "sourcedata" / "sub-01" / "anat" / f"sub-01_mask_{hemi}_{area}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    func = root / "derivatives" / "fmriprep" / "sub-01" / "ses-perceptionTraining01" / "func"
    func.mkdir(parents=True)
    for space in fmriprep_spaces:
        (func / f"sub-01_ses-perceptionTraining01_task-perception_run-01_space-{space}_desc-preproc_bold.nii.gz"
         ).touch()
    return root


def test_god_and_deeprecon_presets_combine_the_hemisphere_masks_and_find_their_space(tmp_path):
    ds = _kamitani_tree(tmp_path / "ds", ("T1w", "MNI152NLin2009cAsym_res-2"))
    masks = _config(tmp_path, "--dataset", "god", bids=ds).workflow.rois.user_masks
    folder = f"{ds}/sourcedata/sub-{{subject}}/anat/sub-{{subject}}_mask_"
    assert masks == {"earlyvisual": [f"{folder}{h}_{a}.nii.gz" for h in ("LH", "RH") for a in ("V1d", "V1v", "V2d",
                                                                                                  "V3v")],
                     "highervisual": [f"{folder}{h}_{a}.nii.gz" for h in ("LH", "RH") for a in ("FFA", "LOC", "PPA")]}
    config = _config(tmp_path, "--dataset", "god", bids=ds)
    assert (config.workflow.space, config.workflow.resolution) == ("T1w", None)
    typed = _config(tmp_path, "--dataset", "god", "--space", "MNI152NLin2009cAsym", bids=ds)
    assert typed.workflow.rois.user_masks == {} and typed.workflow.space == "MNI152NLin2009cAsym"  # atlas there
    mni_only = _kamitani_tree(tmp_path / "mni", ("MNI152NLin2009cAsym_res-2",))
    found = _config(tmp_path, "--dataset", "deeprecon", bids=mni_only)
    assert found.workflow.rois.user_masks == {} and (found.workflow.space, found.workflow.resolution) == (
        "MNI152NLin2009cAsym", "2")
    own = _config(tmp_path, "--dataset", "god", "--roi-mask", "highervisual=/m/hvc.nii.gz", bids=ds)
    assert own.workflow.rois.user_masks["highervisual"] == "/m/hvc.nii.gz"  # typed: replaces the preset's
    assert len(own.workflow.rois.user_masks["earlyvisual"]) == 8


def test_the_nsd_raw_route_takes_nsds_mni_rois_with_mni152nlin6asym_bold(tmp_path):
    root = tmp_path / "NSD"
    raw = root / "nsddata_rawdata"
    func = raw / "derivatives" / "fmriprep" / "sub-01" / "ses-nsd01" / "func"
    func.mkdir(parents=True)
    (func / "sub-01_ses-nsd01_task-nsdcore_run-01_space-MNI152NLin6Asym_res-2_desc-preproc_bold.nii.gz").touch()
    (root / "nsddata" / "ppdata" / "subj01" / "MNI" / "roi").mkdir(parents=True)
    (root / "nsddata" / "ppdata" / "subj01" / "MNI" / "roi" / "streams.nii.gz").touch()
    config = _config(tmp_path, "--dataset", "nsd", bids=raw)
    assert (config.workflow.space, config.workflow.resolution) == ("MNI152NLin6Asym", "2")
    assert config.workflow.rois.user_masks == {
        "earlyvisual": f"{root}/nsddata/ppdata/subj{{subject}}/MNI/roi/streams.nii.gz:early",
        "highervisual": f"{root}/nsddata/ppdata/subj{{subject}}/MNI/roi/streams.nii.gz:ventral"}
    other = _config(tmp_path, "--dataset", "nsd", "--space", "MNI152NLin2009cAsym", bids=raw)
    assert other.workflow.rois.user_masks == {}  # NSD's MNI ROIs are not put on another template's BOLD


def _preflight(dataset, *flags: str, monkeypatch) -> None:
    from bids_recon.bids.layout import collect_inputs
    from bids_recon.cli.parser import build_parser
    from bids_recon.cli.run import build_config, check_collected_inputs

    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(dataset.templateflow_dir))
    parser = build_parser()
    config = build_config(parser.parse_args([str(dataset.bids_dir), str(dataset.bids_dir.parent / "out"),
                                             "participant", "-d", f"fmriprep={dataset.fmriprep_dir}", *flags]),
                          parser)
    ex, wf = config.execution, config.workflow
    inputs = collect_inputs(dataset.bids_dir, dataset.fmriprep_dir, ex.participant_label, ex.session_label,
                            ex.task_id, ex.bids_filters, wf.space, wf.resolution)
    check_collected_inputs(config, inputs)


def test_preflight_refuses_the_atlas_on_t1w_bold_and_lists_the_spaces_there_are(layout_dataset, monkeypatch):
    """THINGS' T1w BOLD without --roi-mask: exit 65 naming T1w and the flags; GOD asked in a space fMRIPrep did
    not write: exit 66 listing the spaces there are and the flags that select them."""
    things = layout_dataset("things")
    flags = [a for a in things.run_args if "--roi-mask" not in a and "_mask.nii.gz" not in a]
    with pytest.raises(BadDataError) as caught:
        _preflight(things, *flags, monkeypatch=monkeypatch)
    message = str(caught.value)
    assert int(caught.value.exit_code) == 65 and "in space T1w" in message, message
    assert "--roi-mask earlyvisual=PATH --roi-mask highervisual=PATH" in message and "_bold.nii.gz" in message
    god = layout_dataset("god")
    with pytest.raises(MissingInputError) as caught:
        _preflight(god, *god.run_args, "--space", "MNI152NLin6Asym", "--res", "2", monkeypatch=monkeypatch)
    message = str(caught.value)
    assert int(caught.value.exit_code) == 66 and "space-MNI152NLin6Asym_res-2_desc-preproc_bold" in message
    assert "is there in space-T1w (no res-): select one with --space T1w --res none" in message, message
