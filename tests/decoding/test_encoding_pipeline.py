"""The encoding analysis in the pipeline: the simulator's ground truth, z_c features, settings, graph, figures, group.

The science check builds one simulated subject in memory (the simulator's forward model: early-visual signal
voxels see the image through receptive fields, higher-visual ones the object category) and single-trial betas with
each voxel's noise-ceiling SNR, without BOLD or GLM (the GLM has its own tests), so that it is fast and its
expectations are sharp.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_recon.config import Config
from bids_recon.decoding.encoding import encoding_analysis, encoding_voxels, to_volume
from bids_recon.decoding.params import EncodingParams
from bids_recon.errors import BadDataError, UsageError

EARLY, HIGHER = 1, 2  # sim voxel_kind of early (receptive fields) and higher (category) signal voxels


@pytest.fixture(scope="module")
def subject():
    """One simulated subject (420 stimuli, 60 of them test stimuli shown 3 times) and its betas and features.

    ``z``: the images at 8 x 8 px (the VAE latent is a downsampled image); ``c``: bag of words of the captions,
    averaged over each image's captions (the text embedding's content). Betas: the simulator's trial amplitudes
    plus Gaussian noise giving each signal voxel its target single-trial ncsnr (median 0.4, as NSD).
    """
    from bids_recon.sim.anatomy import make_anatomy
    from bids_recon.sim.design import make_schedule, run_length
    from bids_recon.sim.model import CONFOUND_BASE, make_confounds, simulate_subject
    from bids_recon.sim.presets import PRESETS
    from bids_recon.sim.stimuli import make_stimuli

    p = PRESETS["tiny"].with_overrides(n_train=360, n_test=60, n_runs=6)
    anat = make_anatomy(p.grid, p.voxel_size, p.early_fraction, p.higher_fraction)
    stim = make_stimuli(np.random.default_rng([0, 0]), p.n_train, p.n_test, p.n_test_repeats, p.image_size)
    n_vols = run_length(p)[1]
    shared, confounds = make_confounds(np.random.default_rng([0, 1]), p, n_vols)
    base = {k: v[list(CONFOUND_BASE)].to_numpy() for k, v in confounds.items()}
    trials, _ = make_schedule(np.random.default_rng([0, 2]), p, stim.table, "01", base)
    model = simulate_subject(p, anat, stim.images, stim.table, trials, n_vols, "01", shared, confounds,
                             np.random.default_rng([0, 3]))
    noise_sd = np.where(model.signal, model.response_sd / np.maximum(model.ncsnr_target, 1e-3), 1.0)
    rng = np.random.default_rng(4)
    betas = (model.amplitudes + noise_sd * rng.standard_normal(model.amplitudes.shape)).astype(np.float32)
    ids = stim.table["stim_id"].astype(str).to_numpy()
    z = stim.images.reshape(len(ids), 8, 4, 8, 4, 3).mean((2, 4)).reshape(len(ids), -1)
    captions = stim.captions.merge(stim.table[["stim_file", "stim_id"]])
    vocabulary = sorted({w for text in captions["caption"] for w in text.split()})
    c = np.zeros((len(ids), len(vocabulary)))
    for sid, rows in captions.groupby("stim_id"):
        for text in rows["caption"]:
            for word in text.split():
                c[sid - 1, vocabulary.index(word)] += 1 / len(rows)
    affine = anat.affine
    brain = nib.Nifti1Image(model.mask.astype(np.uint8), affine)
    rois = {"earlyvisual": nib.Nifti1Image(np.isin(anat.atlas, anat.early_labels).astype(np.uint8), affine),
            "highervisual": nib.Nifti1Image(np.isin(anat.atlas, anat.higher_labels).astype(np.uint8), affine)}
    return {"betas": betas, "trials": trials.assign(stim_id=trials["stim_id"].astype(str)),
            "features": {"z": (ids, z), "c": (ids, c)}, "kind": model.voxel_kind, "brain": brain, "rois": rois}


@pytest.fixture(scope="module")
def visual(subject):
    voxels, rois = encoding_voxels(subject["brain"], subject["rois"], "visual")
    result = encoding_analysis(subject["betas"], subject["trials"], voxels, subject["features"], rois=rois,
                               partition=("z", "c"))
    return result, subject["kind"][voxels]


def test_encoding_r_follows_the_simulators_ground_truth(visual):
    """z predicts the receptive-field voxels, c the category voxels, and neither predicts voxels without signal."""
    result, kind = visual
    maps = result.maps
    assert maps.models == ["z", "c", "z+c"] and set(np.unique(kind)) == {0, EARLY, HIGHER}
    r = {m: maps.r[maps.row(m)] for m in maps.models}
    assert np.median(r["z"][kind == EARLY]) > 0.4
    assert np.median(r["c"][kind == HIGHER]) > 0.35
    assert np.median(r["z"][kind == EARLY]) > np.median(r["c"][kind == EARLY]) + 0.05  # captions name colour, place
    assert np.median(r["c"][kind == HIGHER]) > np.median(r["z"][kind == HIGHER]) + 0.3
    for model in maps.models:  # chance: r over 60 test stimuli (sd ~0.13); BH keeps false discoveries near 5%
        assert abs(np.median(r[model][kind == 0])) < 0.03, model
        discovered = maps.q[maps.row(model)] < 0.05
        assert (discovered & (kind == 0)).sum() <= 0.08 * discovered.sum(), model
        assert 0.35 < np.median(maps.p[maps.row(model), kind == 0]) < 0.65
    assert (maps.q[maps.row("z"), kind == EARLY] < 0.05).mean() > 0.7
    assert (maps.q[maps.row("c"), kind == HIGHER] < 0.05).mean() > 0.7


def test_unique_variance_separates_early_and_higher_voxels(visual):
    result, kind = visual
    unique = result.maps.unique
    assert np.median(unique["z"][kind == EARLY]) > 0.05 > abs(np.median(unique["c"][kind == EARLY]))
    assert np.median(unique["c"][kind == HIGHER]) > 0.1 > abs(np.median(unique["z"][kind == HIGHER]))
    assert abs(np.median(unique["z"][kind == 0])) < 0.01 and abs(np.median(unique["c"][kind == 0])) < 0.01
    table = result.summary.set_index(["roi", "model"])
    assert table.loc[("earlyvisual", "z"), "mean_unique_variance"] > table.loc[("earlyvisual", "c"),
                                                                               "mean_unique_variance"]
    assert table.loc[("highervisual", "c"), "mean_r"] > table.loc[("highervisual", "z"), "mean_r"]
    stats = {(m, s) for m, s, _ in result.statmaps()}
    assert stats >= {("z", "r"), ("c", "q"), ("z+c", "p"), ("z", "uniquevariance"), ("c", "uniquevariance"),
                     ("z+c", "sharedvariance")}


def test_whole_brain_in_blocks_gives_the_same_maps(subject, visual, tmp_path):
    """The 'brain' mask models every voxel in blocks through memory-mapped scratch files; the visual voxels' r
    are those of the visual-mask run (kernels and alphas do not depend on the other voxels)."""
    result, _ = visual
    voxels, rois = encoding_voxels(subject["brain"], subject["rois"], "brain")
    assert len(voxels) == int(np.asarray(subject["brain"].dataobj).sum())
    params = EncodingParams(mask="brain", block_voxels=500)
    whole = encoding_analysis(subject["betas"], subject["trials"], voxels, {"z": subject["features"]["z"]}, params,
                              rois=rois, scratch_dir=tmp_path / "scratch")
    np.testing.assert_allclose(whole.maps.r[0, result.voxel_indices], result.maps.r[0], atol=1e-5)
    assert not list((tmp_path / "scratch").glob("predictions*.npy"))  # removed once scored
    kind = subject["kind"]
    assert abs(np.median(whole.maps.r[0, kind == 0])) < 0.03  # outside the ROIs too: chance


def test_volumes_put_values_at_their_voxels():
    mask = np.zeros((3, 4, 5), dtype=bool)
    mask[1, 1:3, 2:4] = True  # 4 brain voxels
    volume = to_volume(np.array([7.0, 9.0]), mask, np.array([1, 3]))
    brain = np.flatnonzero(mask.ravel())
    assert volume.ravel()[brain[1]] == 7.0 and volume.ravel()[brain[3]] == 9.0
    assert np.isnan(volume).sum() == volume.size - 2


def test_encoding_analysis_names_bad_inputs(subject):
    s = subject
    voxels = np.arange(50)
    ids, z = s["features"]["z"]
    with pytest.raises(BadDataError, match="feature space 'z' has no features"):
        encoding_analysis(s["betas"], s["trials"], voxels, {"z": (ids[:-5], z[:-5])})
    with pytest.raises(UsageError, match="letters and digits"):
        encoding_analysis(s["betas"], s["trials"], voxels, {"z_c": (ids, z)})
    with pytest.raises(BadDataError, match="beta rows"):
        encoding_analysis(s["betas"][:-1], s["trials"], voxels, {"z": (ids, z)})
    empty = nib.Nifti1Image(np.zeros(s["brain"].shape, np.uint8), s["brain"].affine)
    with pytest.raises(BadDataError, match="no voxels"):
        encoding_voxels(s["brain"], {"earlyvisual": empty}, "visual")


# --------------------------------------------------------------------------------------------------- z_c
def test_bottleneck_features_stop_at_the_mid_block_and_ignore_the_cache_state(tmp_path):
    from bids_recon.features.bottleneck import bottleneck_features, space_name, timestep_of
    from bids_recon.features.cache import FeatureCache
    from bids_recon.generate.testing import condition_tiny, tiny_components

    parts = condition_tiny(tiny_components())
    unet = parts["unet"].eval()
    calls = []
    handle = unet.up_blocks[0].register_forward_hook(lambda *args: calls.append(1))
    rng = np.random.default_rng(0)
    z = rng.standard_normal((10, 4, 4, 4)).astype(np.float32)
    c = rng.standard_normal((10, 77, 32)).astype(np.float32)
    plain = bottleneck_features(unet, parts["scheduler"], z, c, [0.25, 0.75], seed=3, batch_size=4)
    assert set(plain) == {"zc25", "zc75"} and plain["zc25"].shape == (10, 64 * 2 * 2)  # mid block: 64 x 2 x 2
    assert not calls  # the up-sampling half never ran
    handle.remove()
    assert not np.allclose(plain["zc25"], plain["zc75"])
    cache = FeatureCache(tmp_path, "tiny")
    bottleneck_features(unet, parts["scheduler"], z[:5], c[:5], [0.25], seed=3, cache=cache, batch_size=4)
    warm = bottleneck_features(unet, parts["scheduler"], z, c, [0.25], seed=3, cache=cache, batch_size=4)
    np.testing.assert_array_equal(warm["zc25"], plain["zc25"])  # same bits with a partly filled cache
    assert cache.hits == 5 and cache.misses == 10  # 5 cached; the second batch (one cached) was computed whole
    other = bottleneck_features(unet, parts["scheduler"], z, c, [0.25], seed=4, batch_size=4)
    assert not np.allclose(other["zc25"], plain["zc25"])  # the noise follows the seed
    assert space_name(0.5) == "zc50" and timestep_of(0.25, 1000) == 250
    with pytest.raises(UsageError, match="between 0 and 1"):
        timestep_of(1.0, 1000)


# ------------------------------------------------------------------------------------------ settings
def _config(**tables) -> Config:
    return Config.from_dict({"workflow": tables})


def test_encoding_defaults_follow_the_generator():
    from bids_recon.generate.card import generator_card
    from bids_recon.workflows.encoding import encoding_partition, encoding_spaces

    assert generator_card("diffusion").encoding_default and not generator_card("linear").encoding_default
    linear = _config()
    assert not generator_card("linear").encoding_enabled(linear) and encoding_spaces(linear) == []
    on = _config(encoding={"enabled": "on"})
    assert encoding_spaces(on) == ["imagepca"] and encoding_partition(on) == []
    diffusion = _config(generate={"generator": "diffusion"})
    assert encoding_spaces(diffusion) == ["z", "c", "zc25", "zc50", "zc75"]
    assert encoding_partition(diffusion) == ["z", "c"]
    off = _config(generate={"generator": "diffusion"}, encoding={"enabled": "off"})
    assert not generator_card("diffusion").encoding_enabled(off) and encoding_spaces(off) == []
    chosen = _config(generate={"generator": "diffusion"},
                     encoding={"features": ["c", "zc50"], "zc_noise_levels": [0.5], "partition": ["c", "zc50"]})
    assert encoding_spaces(chosen) == ["c", "zc50"] and encoding_partition(chosen) == ["c", "zc50"]


@pytest.mark.parametrize("encoding, words", [
    ({"features": ["z"]}, "not offered by the linear generator"),
    ({"features": ["imagepca"], "partition": ["imagepca"]}, "two or more"),
    ({"zc_noise_levels": [0.5, 0.501]}, "differ by at least 0.01"),
    ({"zc_noise_levels": [1.0]}, "< 1"),
    ({"null": "bootstrap"}, "'analytic', 'permutation'"),
    ({"fdr": 0}, "> 0"),
])
def test_bad_encoding_settings_name_the_key(encoding, words):
    with pytest.raises(UsageError, match="workflow.encoding") as info:
        _config(encoding=encoding)
    assert words in str(info.value)


def test_encoding_flags_set_the_settings(tmp_path):
    from bids_recon.cli.parser import build_parser, typed_settings

    args = build_parser().parse_args([str(tmp_path), str(tmp_path / "out"), "participant", "--encoding", "on",
                                      "--encoding-mask", "brain", "--encoding-null", "permutation",
                                      "--encoding-permutations", "200", "--zc-noise-levels", "0.1", "0.9"])
    typed = typed_settings(args)
    assert typed["workflow.encoding.enabled"] == "on" and typed["workflow.encoding.mask"] == "brain"
    assert typed["workflow.encoding.n_permutations"] == 200
    assert typed["workflow.encoding.zc_noise_levels"] == [0.1, 0.9]


# --------------------------------------------------------------------------------------------- graph
@pytest.fixture(scope="module")
def inputs(tiny_dataset):
    from bids_recon.bids.layout import collect_inputs

    return collect_inputs(tiny_dataset.bids_dir, tiny_dataset.fmriprep_dir)


def _run_config(tiny_dataset, tmp_path, **tables) -> Config:
    config = _config(**tables)
    ex = config.execution
    ex.bids_dir, ex.output_dir, ex.work_dir = str(tiny_dataset.bids_dir), str(tmp_path / "out"), str(tmp_path / "w")
    ex.derivatives = {"fmriprep": str(tiny_dataset.fmriprep_dir)}
    ex.run_id, ex.device = "graph-test", "cpu"
    return config


def test_graph_connects_the_encoding_stage(tiny_dataset, inputs, tiny_sd, tmp_path):
    from bids_recon.reports.citation import workflow_descriptions
    from bids_recon.workflows.base import init_bids_recon_wf
    from bids_recon.workflows.participant import participant_methods

    linear = _run_config(tiny_dataset, tmp_path)
    nodes = set(init_bids_recon_wf(linear, {"01": inputs["01"]}).list_node_names())
    assert not any("encoding_wf" in n for n in nodes)  # off by default with the linear generator

    on = _run_config(tiny_dataset, tmp_path, encoding={"enabled": "on", "null": "permutation"})
    workflow = init_bids_recon_wf(on, {"01": inputs["01"]})
    models = workflow.get_node("sub_01_wf.encoding_wf.encoding_models")
    assert models.inputs.spaces == ["imagepca"] and models.inputs.params["null"] == "permutation"
    paragraphs = [text for _, text in workflow_descriptions(workflow)]
    assert paragraphs == participant_methods(on, inputs["01"])
    assert "1000 permutations of the test stimuli (seed 0)" in paragraphs[-1]

    diffusion = _run_config(tiny_dataset, tmp_path, generate={"generator": "diffusion", "diffusion": {
        "model": str(tiny_sd)}}, encoding={"zc_noise_levels": [0.4]})
    workflow = init_bids_recon_wf(diffusion, {"01": inputs["01"]})
    prefix = "sub_01_wf."
    bottleneck = workflow.get_node(prefix + "diffusion_wf.stimulus_bottleneck")
    assert bottleneck.inputs.levels == [0.4] and bottleneck.inputs.seed == 0
    models = workflow.get_node(prefix + "encoding_wf.encoding_models")
    assert models.inputs.spaces == ["z", "c", "zc40"] and models.inputs.partition == ["z", "c"]
    text = " ".join(t for _, t in workflow_descriptions(workflow))
    assert "joint model of z and c" in text and "zc40, z_c" in text

    no_zc = _run_config(tiny_dataset, tmp_path, generate={"generator": "diffusion", "diffusion": {
        "model": str(tiny_sd)}}, encoding={"features": ["z", "c"]})
    assert not any("stimulus_bottleneck" in n for n in init_bids_recon_wf(no_zc, {"01": inputs["01"]})
                   .list_node_names())


# ------------------------------------------------------------------------------------------- figures
def test_maps_go_on_the_surface_only_for_a_whole_mni_brain(tmp_path, subject):
    from nilearn.datasets import load_mni152_brain_mask

    from bids_recon.reports.figures import encoding_display, plot_encoding_maps

    mni = load_mni152_brain_mask(resolution=3)
    nib.save(mni, tmp_path / "mni.nii.gz")
    nib.save(subject["brain"], tmp_path / "sim.nii.gz")
    assert encoding_display(tmp_path / "mni.nii.gz", "MNI152NLin2009cAsym") == "surface"
    assert encoding_display(tmp_path / "mni.nii.gz", "T1w") == "slices"
    assert encoding_display(tmp_path / "sim.nii.gz", "MNI152NLin2009cAsym") == "slices"  # a 4 cm synthetic brain
    inside = np.asarray(mni.dataobj) > 0
    y = np.indices(inside.shape)[1] / inside.shape[1]
    nib.save(nib.Nifti1Image(np.where(inside, 1 - y, np.nan).astype(np.float32), mni.affine), tmp_path / "r.nii.gz")
    out = plot_encoding_maps({"z": tmp_path / "r.nii.gz"}, tmp_path / "mni.nii.gz", tmp_path / "surface.png",
                             display="surface")
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="display"):
        plot_encoding_maps({"z": tmp_path / "r.nii.gz"}, tmp_path / "mni.nii.gz", tmp_path / "x.png", display="3d")


# --------------------------------------------------------------------------------------------- group
def test_group_maps_average_the_participants(tmp_path):
    from bids_recon.group import average_encoding_maps, mean_over_participants
    from bids_recon.io import write_json, write_tsv
    from bids_recon.naming import SubjectOutputs, group_encoding_path, sidecar_path
    from bids_recon.reports.group import encoding_group_sections

    mean, count = mean_over_participants(np.array([[1.0, np.nan, np.nan], [3.0, 2.0, np.nan]]))
    assert count.tolist() == [2, 1, 0] and mean[:2].tolist() == [2.0, 2.0] and np.isnan(mean[2])

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for k, subject in enumerate(("01", "02")):
        names = SubjectOutputs(subject, "images", "MNI152NLin2009cAsym", "2")
        mask = np.zeros((4, 5, 6), np.uint8)
        mask[1:3, 1:4, 1:5] = 1
        (tmp_path / names.brain_mask()).parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(mask, affine), tmp_path / names.brain_mask())
        for model, spaces in (("z", ["z"]), ("z+c", ["z", "c"])):
            values = np.full(mask.shape, np.nan, np.float32)
            values[1:3, 1:4, 1:5] = 0.2 + 0.2 * k
            values[1, 1, 1] = np.nan if k else 0.5  # modelled by sub-01 only
            path = tmp_path / names.encoding_map(model, "r")
            nib.save(nib.Nifti1Image(values, affine), path)
            write_json(sidecar_path(path), {"FeatureSpaces": spaces})
        (tmp_path / names.encoding_summary()).parent.mkdir(parents=True, exist_ok=True)
        write_tsv(tmp_path / names.encoding_summary(), pd.DataFrame(
            [{"roi": "earlyvisual", "model": "z", "voxels": 24, "mean_r": 0.2 + 0.2 * k, "median_r": 0.2,
              "fraction_significant": 0.5, "mean_unique_variance": np.nan}]))
    (groups,) = average_encoding_maps(tmp_path)
    assert groups["participants"] == ["sub-01", "sub-02"] and groups["spaces"] == ["z"]
    mean = np.asarray(nib.load(groups["maps"][("z", "r")]).dataobj)
    assert mean[2, 2, 2] == pytest.approx(0.3) and mean[1, 1, 1] == pytest.approx(0.5) and np.isnan(mean[0, 0, 0])
    assert groups["maps"][("z", "r")] == tmp_path / group_encoding_path("images", "MNI152NLin2009cAsym", "2",
                                                                         "encodingz", stat="r")
    info = json.loads(sidecar_path(groups["maps"][("z", "r")]).read_text())
    assert info["Participants"] == ["sub-01", "sub-02"] and len(info["Sources"]) == 2
    assert info["MaxParticipantsPerVoxel"] == 2
    (section,) = encoding_group_sections(tmp_path, [groups])
    assert len(section.figures) == 2 and all(f.path.is_file() for f in section.figures)
    assert section.tables[0][1]["mean_r"].iloc[0] == pytest.approx(0.3)


def test_encoding_summary_name_is_in_bidsignore():
    from bids_recon.bids.derivatives import BIDSIGNORE
    from bids_recon.naming import SubjectOutputs

    names = SubjectOutputs("01", "images", "MNI152NLin2009cAsym", "2")
    assert names.encoding_map("z+c", "uniquevariance").name == (
        "sub-01_task-images_space-MNI152NLin2009cAsym_res-2_desc-encodingzandc_stat-uniquevariance_statmap.nii.gz")
    assert names.encoding_summary() == Path("sub-01/decoding/sub-01_task-images_desc-rois_encoding.tsv")
    assert "*_statmap.*" in BIDSIGNORE and "decoding" in BIDSIGNORE
