"""``--decoders-from``: an earlier run's decoders found, checked and applied (bids_recon.decoding.reuse), on small
arrays and a fake output folder."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_recon.decoding import RidgeDecoder, fit_ridge_decoder, reuse
from bids_recon.errors import BadDataError, ExitCode
from bids_recon.io import write_json, write_tsv
from bids_recon.naming import SubjectOutputs


def _trials(stims: list[str], split: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"stim_id": stims, "split": split})


def _decoder(rng, n_vox=12, n_targets=3, columns=None) -> RidgeDecoder:
    betas = rng.standard_normal((40, n_vox)).astype(np.float32) * 2 + 1
    targets = rng.standard_normal((40, n_targets)).astype(np.float32)
    from dataclasses import replace

    decoder = fit_ridge_decoder(betas, targets, np.arange(n_vox))
    return decoder if columns is None else replace(decoder, voxel_indices=np.asarray(columns))


def test_apply_equals_predict_on_the_decoders_standardisation_and_leaves_out_training_stimuli():
    rng = np.random.default_rng(0)
    columns = np.array([1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18])  # ROI columns of a 20-voxel brain
    decoder = _decoder(rng, columns=columns)
    assert not np.allclose(decoder.x_mean, 0) and not np.allclose(decoder.x_scale, 1)  # a real standardisation
    stims = ["a", "b", "c", "a", "d", "c", "e", "n"]
    trials = _trials(stims, ["test", "train", "train", "test", "train", "train", "test", "none"])
    betas = rng.standard_normal((len(stims), 20)).astype(np.float32)
    stim_ids = np.array(["a", "b", "c", "d", "e", "n"])
    features = rng.standard_normal((6, 3)).astype(np.float32)
    applied = reuse.apply_decoder(decoder, betas, trials, trained={"b", "c", "x"}, stim_ids=stim_ids,
                                  features=features)
    out = applied.decoded
    # this run's split says a, d, e... are train/test: ignored; b, c were trained on; n is never decoded
    assert list(out.stim_ids) == ["a", "d", "e"] and list(out.n_trials) == [2, 1, 1]
    assert applied.excluded == ["b", "c"]
    mean_a = betas[[0, 3]].mean(axis=0, keepdims=True)
    expected = decoder.predict(np.vstack([mean_a, betas[[4]], betas[[6]]]))
    np.testing.assert_allclose(out.decoded, expected, rtol=1e-5, atol=1e-5)
    by_hand = ((mean_a[:, columns] - decoder.x_mean) / decoder.x_scale) @ decoder.weights + decoder.y_mean
    np.testing.assert_allclose(out.decoded[:1], by_hand, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out.true, features[[0, 3, 4]])


def test_nothing_left_to_decode_is_exit_65_naming_both_runs():
    rng = np.random.default_rng(1)
    decoder = _decoder(rng, n_vox=4)
    trials = _trials(["a", "b", "a"], ["test", "test", "test"])
    with pytest.raises(BadDataError, match="nothing is left") as err:
        reuse.apply_decoder(decoder, np.zeros((3, 4), np.float32), trials, {"a", "b"}, np.array(["a", "b"]),
                            np.zeros((2, 3), np.float32), "the earlier run (/runs/first)", "this run (/runs/second)")
    assert "/runs/first" in str(err.value) and "/runs/second" in str(err.value) and "2 excluded" in str(err.value)
    assert err.value.exit_code == ExitCode.BAD_DATA == 65


def _mask(data: np.ndarray, affine=None) -> nib.Nifti1Image:
    return nib.Nifti1Image(data.astype(np.uint8), np.eye(4) if affine is None else affine)


def test_masks_that_differ_in_shape_affine_or_voxels_are_refused_naming_both():
    base = np.zeros((3, 3, 3))
    base[1, 1, :] = 1
    reuse.check_same_voxels(_mask(base), _mask(base), "first.nii.gz", "second")  # the same: fine
    other = base.copy()
    other[0, 0, 0] = 1
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    for theirs, mine, what in ((_mask(base), _mask(np.zeros((3, 3, 4))), "shape"),
                               (_mask(base), _mask(base, shifted), "affine"),
                               (_mask(base), _mask(other), "voxels")):
        with pytest.raises(BadDataError, match=what) as err:
            reuse.check_same_voxels(theirs, mine, "first.nii.gz", "second")
        assert "first.nii.gz" in str(err.value) and "second" in str(err.value) and err.value.exit_code == 65


def test_another_roi_target_or_model_is_refused_naming_both():
    rng = np.random.default_rng(2)
    decoder = _decoder(rng, n_vox=4, columns=np.array([0, 2, 4, 6]))
    reuse.check_same_roi(decoder, np.array([0, 2, 4, 6]), "first", "second", "earlyvisual")
    with pytest.raises(BadDataError, match="ROI earlyvisual differs.*first.*4 voxels.*second.*3") as err:
        reuse.check_same_roi(decoder, np.array([0, 2, 4]), "first", "second", "earlyvisual")
    assert err.value.exit_code == 65
    model = {"ModelId": "tiny-sd", "ModelWeightsSHA256": {"unet": "aa"}, "ModelPath": "/here"}
    sidecar = {"Target": "z", **{**model, "ModelPath": "/elsewhere"}}
    reuse.check_same_model(sidecar, "z", model, "first.npz", "second")  # the same weights somewhere else: fine
    assert reuse.model_signature(sidecar) == reuse.model_signature(model)
    with pytest.raises(BadDataError, match="Target 'z'.*needs 'c'"):
        reuse.check_same_model(sidecar, "c", model, "first.npz", "second")
    other = {**model, "ModelId": "other-sd", "ModelWeightsSHA256": {"unet": "bb"}}
    with pytest.raises(BadDataError, match="feature models differ") as err:
        reuse.check_same_model(sidecar, "z", other, "first.npz", "second")
    assert "tiny-sd" in str(err.value) and "other-sd" in str(err.value) and "first.npz" in str(err.value)


def _earlier_run(root, subject="01", decoders=(("earlyvisual", "imagepca"),)):
    names = SubjectOutputs(subject, "images", "MNI152NLin2009cAsym", "2")
    for roi, target in decoders:
        path = root / names.decoder(roi, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"npz")
        write_json(path.with_suffix(".json"), {"Target": target, "ROI": roi})
    write_tsv(root / names.trials(), pd.DataFrame({"stim_id": ["a", "b", "a", "c"],
                                                   "split": ["train", "train", "train", "test"]}))
    return names


def test_a_folder_without_this_participants_decoders_is_refused_naming_both(tmp_path):
    first = tmp_path / "first"
    names = _earlier_run(first)
    wanted = [("earlyvisual", "imagepca")]
    found = reuse.find_source_decoders(first, "01", "images", wanted)
    assert found == {("earlyvisual", "imagepca"): first / names.decoder("earlyvisual", "imagepca")}
    with pytest.raises(BadDataError) as err:
        reuse.find_source_decoders(first, "02", "images", wanted, "this run (/out/second)")
    text = str(err.value)
    assert "DIR holds decoders of sub-01, not sub-02" in text and "--shared-space" in text
    assert str(first) in text and "/out/second" in text and err.value.exit_code == 65
    with pytest.raises(BadDataError, match="no decoders"):
        reuse.find_source_decoders(tmp_path / "first" / "sub-01" / "func", "01", "images", wanted)
    with pytest.raises(BadDataError, match="another generator, ROI or target") as err:  # e.g. the diffusion's
        reuse.find_source_decoders(first, "01", "images", [("earlyvisual", "z"), ("highervisual", "c")])
    assert "label-earlyvisual desc-imagepca" in str(err.value)
    _earlier_run(first, decoders=(("earlyvisual", "imagepca"), ("highervisual", "imagepca")))
    with pytest.raises(BadDataError, match="would not fit.*label-highervisual"):
        reuse.find_source_decoders(first, "01", "images", wanted)


def test_training_stimuli_summary_and_basis_location(tmp_path):
    first = tmp_path / "first"
    names = _earlier_run(first)
    decoder = first / names.decoder("earlyvisual", "imagepca")
    table = reuse.source_trials(first, "01", decoder)
    assert reuse.training_stimuli(table) == ({"a", "b"}, 3)
    assert reuse.summarise_source(first, "01").text() == "from first (sub-01, trained on 3 trials)"
    assert reuse.basis_path(decoder).name == "sub-01_task-images_label-earlyvisual_desc-imagepca_basis.npz"
    with pytest.raises(BadDataError, match="rerun that run with this version"):
        reuse.find_basis(decoder)
    assert json.loads(reuse.read_sidecar(decoder) and json.dumps(reuse.read_sidecar(decoder)))["Target"] == \
        "imagepca"


def test_stimulus_ids_of_another_resolver_kind_name_other_images():
    from bids_recon.decoding.reuse import same_stimulus_ids, stimulus_id_kind

    assert stimulus_id_kind("nsd:hdf5=/x/nsd_stimuli.hdf5") == "nsd" and stimulus_id_kind("files") == "files"
    assert same_stimulus_ids("nsd", "nsd")  # the same 73k ids: the training ones are left out
    assert not same_stimulus_ids("nsd", "nsdsynthetic")  # NSD-synthetic's "17" is not NSD's image 17
    assert same_stimulus_ids(None, "nsdsynthetic")  # unknown (older sidecar): assume the same, leave ids out
