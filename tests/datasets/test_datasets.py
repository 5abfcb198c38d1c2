"""Public datasets' formats, function by function: stimulus resolvers, captions, test-split rules, fMRIPrep naming
variants and dataset presets. Events excerpts below are copied from the real files of the OpenNeuro datasets (first
rows of sub-01's first run); everything else is built here in a few milliseconds.

The layouts end to end through the command line are in tests/datasets/test_layouts.py (slow).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bids_recon.bids.fmriprep import find_output, parse_derivative
from bids_recon.design import NOT_DECODED, describe_split, mark_test_split, parse_test_split, run_trials
from bids_recon.design.confounds import current_confound_names, load_confounds
from bids_recon.design.split import ColumnRule, NamedRule, SessionRule
from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.features import resolver_for, trial_rows
from bids_recon.features.captions import captions_for, stimulus_captions
from bids_recon.features.params import StimulusParams
from bids_recon.features.resolvers.imagenet import name_from_id
from tests.conftest import cli_config


def _events(text: str) -> pd.DataFrame:
    table = pd.read_csv(io.StringIO(text.strip() + "\n"), sep="\t", na_values=["n/a"], keep_default_na=False)
    return table.sort_values("onset", kind="stable").reset_index(drop=True)


# ds001246 (GOD) sub-01 ses-perceptionTraining01 run-01, rows 1-8 and the last 3
GOD = """onset\tduration\ttrial_no\tevent_type\tstimulus_id\tstimulus_name\tcategory_index\timage_index\tresponse_time
0\t33\t1\trest\tn/a\tn/a\tn/a\tn/a\tn/a
33\t9\t2\tstimulus\t2766534.015976\tn02766534_15976\t41\t324\tn/a
42\t9\t3\tstimulus\t1970164.028566\tn01970164_28566\t17\t134\tn/a
51\t9\t4\tstimulus\t4376876.011868\tn04376876_11868\t127\t1011\tn/a
60\t9\t5\tstimulus\t4225987.006665\tn04225987_6665\t117\t934\tn/a
69\t9\t6\tstimulus\t3079230.008270\tn03079230_8270\t57\t456\tn/a
78\t9\t7\tstimulus\t3079230.008270\tn03079230_8270\t57\t456\t79.034210
510\t9\t55\tstimulus\t2800213.004703\tn02800213_4703\t44\t351\tn/a
519\t9\t56\tstimulus\t4482393.006359\tn04482393_6359\t137\t1096\tn/a
528\t6\t57\trest\tn/a\tn/a\tn/a\tn/a\tn/a
"""
# ds001506 (Deeprecon) sub-01 ses-perceptionNaturalImageTraining01 run-01 (no trial_no; event_type numeric)
DEEPRECON = """onset\tduration\tevent_type\tstimulus_id\tstimulus_name\tcategory_index\timage_index\tresponse_time
0\t32\t-1\tn/a\tn/a\tn/a\tn/a\tn/a
32\t8\t1\t1639765.047681\tn01639765_47681\t2\t14\tn/a
40\t8\t1\t12596148.006386\tn12596148_6386\t149\t1189\tn/a
64\t8\t1\t3472535.010217\tn03472535_10217\t74\t585\tn/a
72\t8\t2\t3472535.010217\tn03472535_10217\t74\t585\t73.032205
472\t6\t-2\tn/a\tn/a\tn/a\tn/a\tn/a
"""
# ds004192 (THINGS-fMRI) sub-01 ses-things01 run-01, rows 1-8
THINGS = """onset\tduration\ttrial_type\tcategory_nr\texemplar_nr\ttest_image_nr\tthings_category_nr\tthings_exemplar_nr\tresponse_time\tfile_path
3.0\t0.5\texp\t205\t12\tn/a\t496.0\t12.0\tn/a\tdog/dog_12s.jpg
7.5\t0.5\texp\t384\t12\tn/a\t967.0\t12.0\tn/a\tmango/mango_12s.jpg
12.0\t0.5\tcatch\t721\t8\tn/a\tn/a\tn/a\t0.871\tcatch008.jpg
16.5\t0.5\texp\t587\t12\tn/a\t1509.0\t12.0\tn/a\tspatula/spatula_12s.jpg
21.0\t0.5\ttest\t110\t13\t22.0\t253.0\t14.0\tn/a\tcandelabra/candelabra_14s.jpg
25.5\t0.5\texp\t442\t12\tn/a\t1106.0\t12.0\tn/a\tpanda/panda_12s.jpg
30.0\t0.5\tcatch\t721\t17\tn/a\tn/a\tn/a\t0.918\tcatch017.jpg
34.5\t0.5\ttest\t436\t13\t71.0\t1094.0\t14.0\tn/a\tpacifier/pacifier_14s.jpg
"""  # noqa: E501
# ds004496 (NOD) sub-01 ses-coco run-01, rows 1-7 (condition n/a: fixation events, no image)
NOD_COCO = """onset\tduration\ttrial_type\tresponse\tresponse_time\tcondition
0.014\t0.5\t29.0\t0.0\t0.0\tcoco/000000124419.jpg
3.014\t0.5\t12.0\t0.0\t0.0\tcoco/000000036598.jpg
6.013999999999999\t0.5\t88.0\t0.0\t0.0\tcoco/000000415225.jpg
9.013\t0.5\t2000.0\t1.0\t0.940544366836548\tn/a
12.013\t0.5\t64.0\t0.0\t0.0\tcoco/000000314313.jpg
15.013\t0.5\t1000.0\t0.0\t0.0\tn/a
18.012999999999995\t0.5\t120.0\t0.0\t0.0\tcoco/000000566021.jpg
"""
# ds001499 (BOLD5000) sub-CSI1 ses-01 run-01, rows 1-5 and a rep_ row
BOLD5000 = """onset\tduration\tSubj\tSess\tRun\tTrial\tImgName\tImgType\tStimOn(s)\tStimOff(s)\tResponse\tRT\tstim_file
6.0367\t0.9678\t1\t1\t1\t1\tn01930112_19568.JPEG\timagenet\t6.0367\t7.0045\t2\t3.6309\tn01930112_19568.JPEG
16.0122\t0.9837\t1\t1\t1\t2\tn03733281_29214.JPEG\timagenet\t16.0122\t16.9959\t2\t4.2031\tn03733281_29214.JPEG
36.0121\t0.9844\t1\t1\t1\t4\tCOCO_train2014_000000420713.jpg\tcoco\t36.0121\t36.9965\t1\t2.4701\tCOCO_train2014_000000420713.jpg
95.9955\t1.0011\t1\t1\t1\t10\tconcert5.jpg\tscenes\t95.9955\t96.9965\t3\t2.2059\tconcert5.jpg
306.0056\t1.0004\t1\t1\t1\t31\tCOCO_train2014_000000113449.jpg\trep_coco\t306.0056\t307.0060\t2\t5.2033\tCOCO_train2014_000000113449.jpg
"""  # noqa: E501


# --------------------------------------------------------------------------------------------------------------------
# which rows are trials, on the real tables


def test_god_rows_drop_rest_and_keep_one_back_repeats_undecoded():
    rows = trial_rows(_events(GOD), StimulusParams(resolver="imagenet"))
    assert list(rows["stim_id"]) == ["n02766534_15976", "n01970164_28566", "n04376876_11868", "n04225987_6665",
                                     "n03079230_8270", "n03079230_8270", "n02800213_4703", "n04482393_6359"]
    assert list(rows["decode"]) == [True, True, True, True, True, False, True, True]  # row 7 repeats row 6


def test_deeprecon_event_types_and_float_ids():
    rows = trial_rows(_events(DEEPRECON), StimulusParams(resolver="imagenet", column="stimulus_id"))
    assert list(rows["stim_id"]) == ["n01639765_47681", "n12596148_6386", "n03472535_10217", "n03472535_10217"]
    assert list(rows["decode"]) == [True, True, True, False]  # event_type 2: a one-back repetition
    assert name_from_id("3626115.019498") == "n03626115_19498" and name_from_id("19") == "19"


def test_things_catch_rows_are_modelled_not_decoded_and_trial_type_splits():
    params = StimulusParams(resolver="files:exclude=trial_type:catch", column="file_path", test_split="trial_type=test")
    table = run_trials(_events(THINGS), "01", "things01", "01", params, test_split=params.test_split)
    assert len(table) == 8  # every image on screen gets a GLM regressor
    assert list(table["split"]) == ["train", "train", NOT_DECODED, "train", "test", "train", NOT_DECODED, "test"]


def test_nod_and_bold5000_columns_are_found_and_na_rows_skipped():
    nod = trial_rows(_events(NOD_COCO))  # files resolver: stim_file, file_path, condition or ImgName
    assert list(nod["stim_id"]) == ["coco/000000124419.jpg", "coco/000000036598.jpg", "coco/000000415225.jpg",
                                    "coco/000000314313.jpg", "coco/000000566021.jpg"]
    bold = trial_rows(_events(BOLD5000))
    assert bold["stim_id"].iloc[2] == "COCO_train2014_000000420713.jpg" and bold["decode"].all()


def test_missing_stimulus_column_names_the_columns_there_are():
    with pytest.raises(BadDataError, match="no column 'stimulus_name' or 'stimulus_id'.*file_path"):
        trial_rows(_events(THINGS), StimulusParams(resolver="imagenet"), Path("events.tsv"))


def test_unknown_resolver_and_option_are_usage_errors():
    from bids_recon.features.resolvers import parse_resolver

    assert parse_resolver("nsd:hdf5=/a.hdf5,base=0") == ("nsd", {"hdf5": "/a.hdf5", "base": "0"})
    for bad, words in (("nds", "unknown stimulus resolver"), ("nsd:hfd5=/a", "unknown option 'hfd5'"),
                       ("files:exclude", "KEY=VALUE")):
        with pytest.raises(UsageError, match=words):
            parse_resolver(bad)


# --------------------------------------------------------------------------------------------------------------------
# images: files in nested folders, any mode, found by bare name


def _write(path: Path, mode: str, size=(20, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = {"RGB": (200, 30, 10), "L": 128, "CMYK": (0, 255, 255, 0), "RGBA": (255, 0, 0, 0), "I;16": 65535}[mode]
    Image.new(mode, size, colour).save(path)
    return path


def test_files_resolver_reads_any_mode_as_rgb_and_finds_bare_names(tmp_path):
    ds, outside = tmp_path / "ds", tmp_path / "THINGS" / "images"
    _write(ds / "stimuli" / "a.png", "RGB")
    _write(outside / "dog" / "dog_12s.jpg", "CMYK")
    _write(outside / "cat" / "grey.jpg", "L")
    _write(outside / "deep" / "er" / "COCO_train2014_000000420713.png", "RGBA")
    _write(outside / "sixteen.png", "I;16")
    resolver = resolver_for(ds, StimulusParams(dirs=[str(outside)]))
    images = resolver.load_images(["a.png", "dog/dog_12s.jpg", "grey.jpg", "COCO_train2014_000000420713.png",
                                   "sixteen.png"], 8)
    assert images.shape == (5, 8, 8, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images[0, 0, 0], np.array([200, 30, 10]) / 255, atol=0.01)
    assert images[1, 0, 0, 0] > 0.9 and images[1, 0, 0, 1] < 0.1  # CMYK (0, 255, 255, 0) is red
    np.testing.assert_allclose(images[2, 0, 0], [128 / 255] * 3, atol=0.02)  # greyscale -> three equal channels
    np.testing.assert_allclose(images[3, 0, 0], [1, 1, 1], atol=0.01)  # transparent over white
    np.testing.assert_allclose(images[4, 0, 0], [1, 1, 1], atol=0.01)  # 16-bit full scale
    assert resolver.load_image("dog/dog_12s.jpg").shape == (12, 20, 3)
    assert resolver.category("dog/dog_12s.jpg") == "dog" and resolver.coco_id("COCO_train2014_000000420713.png") == \
        420713
    assert resolver.category("kitchen3.jpg") == "kitchen" and resolver.category("elevatorOutside2.jpg") == \
        "elevator outside"


def test_files_resolver_refusals_name_the_stimulus(tmp_path):
    ds = tmp_path / "ds"
    _write(ds / "stimuli" / "x" / "same.png", "RGB")
    _write(ds / "stimuli" / "y" / "same.png", "RGB")
    (ds / "stimuli" / "broken.png").write_bytes(b"not an image")
    resolver = resolver_for(ds)
    with pytest.raises(BadDataError, match="'same.png' matches 2 files"):
        resolver.path("same.png")
    assert resolver.path("x/same.png").parent.name == "x"
    with pytest.raises(MissingInputError, match="'nope.jpg' not found"):
        resolver.check("nope.jpg")
    with pytest.raises(BadDataError, match="'broken.png' is not an image"):
        resolver.check("broken.png")


# --------------------------------------------------------------------------------------------------------------------
# NSD


@pytest.fixture
def nsd_root(tmp_path):
    """NSD's download layout in miniature: 10 images, ids 3 and 7 shared."""
    root = tmp_path / "NSD"
    raw = root / "nsddata_rawdata"
    raw.mkdir(parents=True)
    brick = np.zeros((10, 6, 6, 3), np.uint8)
    brick[:, :, :, 0] = np.arange(10)[:, None, None] * 20  # row r has red = 20 r
    stimuli = root / "nsddata_stimuli" / "stimuli" / "nsd"
    stimuli.mkdir(parents=True)
    with h5py.File(stimuli / "nsd_stimuli.hdf5", "w") as handle:
        handle.create_dataset("imgBrick", data=brick)
    experiments = root / "nsddata" / "experiments" / "nsd"
    experiments.mkdir(parents=True)
    pd.DataFrame({"cocoId": 1000 + np.arange(10), "cocoSplit": "train2017", "nsdId": np.arange(10),
                  "shared1000": np.isin(np.arange(10), [2, 6])}).to_csv(experiments / "nsd_stim_info_merged.csv")
    return raw


def test_nsd_resolver_reads_rows_by_73k_id_and_finds_the_download_layout(nsd_root):
    resolver = resolver_for(nsd_root, StimulusParams(resolver="nsd"))
    images = resolver.load_images(["3", "1", "10"], 6)
    np.testing.assert_allclose(images[:, 0, 0, 0] * 255, [40, 0, 180], atol=0.5)  # 73k id 3 is row 2
    assert resolver.content_key("3") == resolver.content_key("3") != resolver.content_key("4")
    assert resolver.named_test_set("shared1000") == {"3", "7"} and resolver.coco_id("3") == 1002
    with pytest.raises(BadDataError, match="73k id 11 is beyond the 10 images of imgBrick"):
        resolver.check("11")
    events = pd.DataFrame({"onset": [0.0, 4, 8, 12], "duration": 3.0, "73k_id": [3, 0, 10, np.nan],
                           "nsdId": [2, -1, 9, np.nan]})
    assert list(trial_rows(events, StimulusParams(resolver="nsd"))["stim_id"]) == ["3", "10"]  # 0 = blank
    assert list(trial_rows(events.drop(columns="73k_id").iloc[[0, 2]],
                           StimulusParams(resolver="nsd"))["stim_id"]) == ["3", "10"]  # nsdId counts from 0
    with pytest.raises(BadDataError, match="'73k_id' 'x' on line 3 is not an integer"):
        trial_rows(pd.DataFrame({"onset": [0.0, 1], "duration": 1.0, "73k_id": ["4", "x"]}),
                   StimulusParams(resolver="nsd"))


def test_nsd_shared1000_from_expdesign_when_no_stim_info(nsd_root):
    from scipy.io import savemat

    experiments = nsd_root.parent / "nsddata" / "experiments" / "nsd"
    (experiments / "nsd_stim_info_merged.csv").unlink()
    savemat(experiments / "nsd_expdesign.mat", {"sharedix": np.array([[2.0, 5.0]])})
    assert resolver_for(nsd_root, StimulusParams(resolver="nsd")).named_test_set("shared1000") == {"2", "5"}
    (experiments / "nsd_expdesign.mat").unlink()
    with pytest.raises(MissingInputError, match="shared1000 needs nsd_stim_info_merged.csv"):
        resolver_for(nsd_root, StimulusParams(resolver="nsd")).named_test_set("shared1000")
    with pytest.raises(MissingInputError, match="--stimuli nsd:hdf5="):
        resolver_for(nsd_root.parent / "elsewhere", StimulusParams(resolver="nsd")).check("1")


# --------------------------------------------------------------------------------------------------------------------
# captions


def _coco_json(path: Path, captions: dict[int, list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": [{"id": i} for i in captions], "annotations": [
        {"image_id": i, "id": k, "caption": c} for k, (i, texts) in enumerate(captions.items()) for c in texts]}))
    return path


def test_captions_from_coco_by_id_and_categories(nsd_root, tmp_path):
    folder = tmp_path / "annotations"
    _coco_json(folder / "captions_train2017.json", {1002: ["a cat", "a cat on a mat"]})
    _coco_json(folder / "captions_val2017.json", {1006: ["a dog"]})
    resolver = resolver_for(nsd_root, StimulusParams(resolver="nsd", captions=str(folder)))
    assert captions_for(resolver, ["3", "7"]) == {"3": ["a cat", "a cat on a mat"], "7": ["a dog"]}
    with pytest.raises(BadDataError, match=r"1 of 2 stimuli have no caption \('4' \(COCO id 1003\)\)"):
        captions_for(resolver, ["3", "4"])
    synsets = tmp_path / "synset_words.txt"
    synsets.write_text("n01440764 tench, Tinca tinca\n2 n02766534: barrow, garden cart\n")  # ILSVRC's; numbered
    things = resolver_for(tmp_path, StimulusParams(category_captions=True, synset_words=str(synsets),
                                                   captions=str(tmp_path / "none.tsv")))
    found, missing = stimulus_captions(things, ["chicken_wire/chicken_wire_12s.jpg", "n02766534_15976.JPEG",
                                                "x.png"])
    assert found == {"chicken_wire/chicken_wire_12s.jpg": ["a photo of a chicken wire"],
                     "n02766534_15976.JPEG": ["a photo of a barrow"]} and missing == ["'x.png' (no category)"]


# --------------------------------------------------------------------------------------------------------------------
# test splits


def test_split_rules_parse_and_describe():
    assert parse_test_split("") is None and parse_test_split("repeats") is None
    assert parse_test_split("trial_type=test") == ("trial_type", ["test"]) and isinstance(
        parse_test_split("trial_type=test"), ColumnRule)
    assert parse_test_split("ses-perceptionTest*,ses-x") == SessionRule(["perceptionTest*", "x"])
    assert parse_test_split("shared1000") == NamedRule("shared1000")
    assert "ses-perceptionTest*" in describe_split(2, "ses-perceptionTest*")
    for bad in ("ses-", "trial_type", "=x"):
        with pytest.raises(UsageError):
            parse_test_split(bad)


def test_session_and_named_rules_mark_the_test_trials(nsd_root):
    events = _events(GOD)
    params = StimulusParams(resolver="imagenet", test_split="ses-perceptionTest*")
    training = run_trials(events, "01", "perceptionTraining01", "01", params)
    test = run_trials(events, "01", "perceptionTest01", "01", params)
    assert set(mark_test_split(training, events, params)["split"]) == {"train", NOT_DECODED}
    assert set(mark_test_split(test, events, params)["split"]) == {"test", NOT_DECODED}
    nsd = StimulusParams(resolver="nsd", test_split="shared1000")
    nsd_events = pd.DataFrame({"onset": [0.0, 4, 8], "duration": 3.0, "73k_id": [3, 4, 7]})
    marked = mark_test_split(run_trials(nsd_events, "01", "nsd01", "01", nsd), nsd_events, nsd,
                             resolver_for(nsd_root, nsd))
    assert list(marked["split"]) == ["test", "train", "test"]
    with pytest.raises(UsageError, match="does not know this test set"):
        mark_test_split(run_trials(nsd_events, "01", None, "01", StimulusParams(column="73k_id")), nsd_events,
                        StimulusParams(column="73k_id", test_split="shared1000"), resolver_for(nsd_root))


# --------------------------------------------------------------------------------------------------------------------
# fMRIPrep names


def test_fmriprep_names_of_every_version_parse_to_the_same_entities(tmp_path):
    names = {
        "sub-CSI1_ses-01_task-5000scenes_run-01_bold_space-T1w_preproc.nii.gz": ("bold", "preproc", 1, True),
        "sub-CSI1_ses-01_task-5000scenes_run-01_bold_space-T1w_brainmask.nii.gz": ("mask", "brain", 1, True),
        "sub-CSI1_ses-01_task-5000scenes_run-01_bold_confounds.tsv": ("timeseries", "confounds", 1, True),
        "sub-01_ses-coco_task-coco_run-1_space-T1w_desc-preproc_bold.nii.gz": ("bold", "preproc", 1, False),
        "sub-01_task-x_run-02_desc-confounds_regressors.tsv": ("timeseries", "confounds", 2, False),
    }
    for name, (suffix, desc, run, legacy) in names.items():
        parsed = parse_derivative(tmp_path / name)
        assert (parsed.suffix, parsed.entities["desc"], parsed.entities["run"], parsed.legacy) == \
            (suffix, desc, run, legacy), name
    files = [parse_derivative(tmp_path / n) for n in (
        "sub-01_ses-a_task-t_acq-fast_run-1_echo-1_space-T1w_desc-preproc_bold.nii.gz",
        "sub-01_ses-a_task-t_acq-fast_run-1_space-T1w_desc-preproc_bold.nii.gz",
        "sub-01_ses-a_task-t_acq-slow_run-1_space-T1w_desc-preproc_bold.nii.gz",
        "sub-01_ses-a_task-t_acq-fast_run-10_space-T1w_desc-preproc_bold.nii.gz",
        "sub-01_ses-a_task-t_acq-fast_run-1_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz")]
    raw = {"subject": "01", "session": "a", "task": "t", "acquisition": "fast", "run": 1, "echo": 2}
    found = find_output(files, raw, "bold", "preproc", (".nii.gz",), "T1w", None)
    assert [f.path.name for f in found] == [files[1].path.name]  # echo-1 is another echo; acq-slow, run-10 others
    assert find_output(files, raw, "bold", "preproc", (".nii.gz",), "MNI152NLin2009cAsym", "2")[0] is files[4]
    assert find_output(files, raw, "bold", "preproc", (".nii.gz",), "MNI152NLin2009cAsym", None)[0] is files[4]
    assert find_output(files, raw, "bold", "preproc", (".nii.gz",), "MNI152NLin2009cAsym", "1") == []


def test_legacy_confound_columns_are_read_by_their_current_names(tmp_path):
    table = tmp_path / "c.tsv"
    # ds001499's header (BOLD5000, fMRIPrep 1.0): CSF WhiteMatter GlobalSignal stdDVARS non-stdDVARS ... X Y Z RotX
    pd.DataFrame({"CSF": [1.0, 2], "WhiteMatter": [3.0, 4], "GlobalSignal": 0.0, "non-stdDVARS": ["n/a", 1],
                  "aCompCor00": 0.1, "Cosine01": 0.2, "X": 5.0, "RotZ": 6.0}).to_csv(table, sep="\t", index=False)
    loaded = load_confounds(table, ["csf", "white_matter", "trans_x", "rot_z", "a_comp_cor_00", "dvars"], 2)[0]
    assert loaded["csf"].tolist() == [1, 2] and loaded["trans_x"].tolist() == [5, 5] and loaded["dvars"][0] == 0
    assert current_confound_names(["csf", "CSF"]) == {}  # a current name already there is kept


# --------------------------------------------------------------------------------------------------------------------
# presets


_config = cli_config


def test_preset_fills_only_what_the_user_did_not_set(tmp_path):
    config = _config(tmp_path, "--dataset", "things", "--test-split", "repeats",
                     toml='[workflow.stimuli]\ncolumn = "stim_file"\n')
    stim = config.workflow.stimuli
    assert stim.resolver == "files:exclude=trial_type:catch" and config.execution.task_id == "things"
    assert stim.test_split == "repeats" and stim.column == "stim_file"  # the flag and the file win
    assert config.workflow.space == "T1w" and config.workflow.resolution is None
    config.save(tmp_path / "saved.toml")
    saved = (tmp_path / "saved.toml").read_text()
    assert 'dataset = "things"' in saved and 'test_split = "repeats"' in saved and 'resolution = "none"' in saved
    from bids_recon.config import Config

    again = Config.load(tmp_path / "saved.toml")
    assert again.workflow.stimuli == stim and again.workflow.resolution is None


def test_every_preset_builds_and_deeprecon_lists_its_natural_image_sessions(tmp_path):
    from bids_recon.datasets import PRESETS

    for name in PRESETS:
        assert _config(tmp_path, "--dataset", name).execution.dataset == name
    for session in ("perceptionNaturalImageTraining01", "perceptionNaturalImageTest01", "perceptionLetterImage01"):
        (tmp_path / "ds" / "sub-01" / f"ses-{session}").mkdir(parents=True)
    config = _config(tmp_path, "--dataset", "deeprecon")
    assert config.execution.session_label == ["perceptionNaturalImageTest01", "perceptionNaturalImageTraining01"]
    with pytest.raises(UsageError, match="execution.dataset.*'nds'.*did you mean 'nsd'"):
        _config(tmp_path, "--dataset", "nds")
