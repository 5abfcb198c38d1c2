"""The latent-vector generator (Dado et al. 2022, "HYPER") at function level.

Generators here are made by hand (a small torch module, saved as TorchScript or imported as
``package.module:callable``), independently of the simulator; the simulator's faces layout and the command line's
preflight on it are checked at the end. The end-to-end run is in tests/generate/test_latent_run.py (slow).
"""

from __future__ import annotations

import hashlib
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bids_recon.decoding import train_and_decode
from bids_recon.decoding.params import DecodingParams
from bids_recon.errors import BadDataError, BidsReconError, ExitCode, MissingInputError, UsageError
from bids_recon.evaluate import evaluate_generated
from bids_recon.evaluate.latent import add_latent_metrics, latent_similarity
from bids_recon.evaluate.params import EvaluationParams
from bids_recon.generate.latent import (
    LatentParams,
    check_generator,
    check_latent_inputs,
    encode_latents,
    generate_images,
    invert_latents,
    load_module,
    load_recorded,
    read_latents,
    resolve_rois,
    roi_label,
    stimulus_latents,
)

#: A user's generator package, written to a temporary folder and imported as ``usergen:make`` (not the simulator's).
USER_PACKAGE = textwrap.dedent('''
    import torch

    class Tiny(torch.nn.Module):
        """latents (n, dim) -> images (n, 3, size, size) in [-1, 1]: a seeded linear map and tanh."""

        def __init__(self, dim=6, size=12, seed=0, declare=True, channels_last=False):
            super().__init__()
            generator = torch.Generator().manual_seed(seed)
            self.weight = torch.nn.Parameter(torch.randn(dim, 3 * size * size, generator=generator) / dim ** 0.5)
            self.bias = torch.nn.Parameter(0.1 * torch.randn(3 * size * size, generator=generator))
            self.size, self.channels_last = size, channels_last
            if declare:
                self.latent_dim = dim

        def forward(self, z):
            x = torch.tanh(z @ self.weight + self.bias).view(z.shape[0], 3, self.size, self.size)
            return x.permute(0, 2, 3, 1) if self.channels_last else x

    def make():
        return Tiny()

    def undeclared():
        return Tiny(declare=False)

    def channels_last():
        return Tiny(channels_last=True)

    def channels_last_faces():
        return Tiny(dim=16, size=32, channels_last=True)

    class Frozen(Tiny):
        def forward(self, z):
            with torch.no_grad():
                return super().forward(z)

    def frozen():
        return Frozen()

    def not_a_module():
        return "a string"

    def broken():
        raise RuntimeError("weights missing")
''')


@pytest.fixture
def usergen(tmp_path, monkeypatch):
    """The user's package on ``sys.path``; returns its module."""
    (tmp_path / "usergen.py").write_text(USER_PACKAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import usergen as module

    return importlib.reload(module)


def _script(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def _latents_tsv(path: Path, stim_ids: list[str], latents: np.ndarray, first: str = "stim_file") -> Path:
    table = pd.DataFrame(latents, columns=[f"z{k}" for k in range(latents.shape[1])])
    table.insert(0, first, stim_ids)
    table.to_csv(path, sep="\t", index=False)
    return path


def _exit(error: BidsReconError) -> int:
    return int(error.exit_code)


def test_torchscript_and_callable_load_the_same_generator(usergen, tmp_path):
    scripted = load_module(str(_script(usergen.make(), tmp_path / "g.pt")), device="cpu")
    imported = load_module("usergen:make")
    assert (scripted.kind, imported.kind) == ("torchscript", "callable")
    assert scripted.sha256 == hashlib.sha256((tmp_path / "g.pt").read_bytes()).hexdigest()
    assert imported.file == tmp_path / "usergen.py" and imported.sha256
    assert scripted.state_sha256 == imported.state_sha256  # same weights, whatever the format
    assert scripted.declared_dim == imported.declared_dim == 6
    assert check_generator(scripted, 6) == check_generator(imported, 6) == (12, 12)
    latents = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
    a = generate_images(scripted, latents, "signed", batch_size=2)
    b = generate_images(imported, latents, "signed", batch_size=5)
    assert a.shape == (5, 12, 12, 3) and 0 <= a.min() and a.max() <= 1
    np.testing.assert_allclose(a, b, atol=1e-6)
    with torch.no_grad():
        direct = (usergen.make()(torch.from_numpy(latents)).permute(0, 2, 3, 1).numpy() + 1) / 2
    np.testing.assert_allclose(a, direct, atol=1e-6)  # [-1, 1] mapped to [0, 1]
    unit = generate_images(scripted, latents, "unit")
    np.testing.assert_allclose(unit, np.clip(direct * 2 - 1, 0, 1), atol=1e-6)
    small = generate_images(scripted, latents, output_size=6)  # resized batch by batch
    assert small.shape == (5, 6, 6, 3) and abs(small.mean() - a.mean()) < 0.02
    identity = scripted.identity()
    assert identity["GeneratorSHA256"] == scripted.sha256 and identity["GeneratorImageShape"] == [3, 12, 12]
    assert load_recorded(str(tmp_path / "g.pt"), identity).sha256 == scripted.sha256
    _script(usergen.Tiny(seed=3), tmp_path / "g.pt")  # the file changed after its identity was taken
    with pytest.raises(BadDataError, match="changed since the workflow was built"):
        load_recorded(str(tmp_path / "g.pt"), identity)


def test_generator_problems_name_the_file_and_the_mismatch(usergen, tmp_path):
    with pytest.raises(MissingInputError, match="generator file does not exist") as missing:
        load_module(str(tmp_path / "absent.pt"))
    assert _exit(missing.value) == 66 and "absent.pt" in str(missing.value)
    (tmp_path / "junk.pt").write_bytes(b"not a zip archive")
    with pytest.raises(BadDataError, match="not a TorchScript archive") as junk:
        load_module(str(tmp_path / "junk.pt"))
    assert _exit(junk.value) == 65 and "junk.pt" in str(junk.value)
    with pytest.raises(MissingInputError, match="cannot import module 'nopackage.gan'"):
        load_module("nopackage.gan:make")
    with pytest.raises(BadDataError, match="returned str, expected a torch.nn.Module"):
        load_module("usergen:not_a_module")
    with pytest.raises(BadDataError, match="weights missing"):
        load_module("usergen:broken")
    with pytest.raises(BadDataError, match="has no 'absent'"):
        load_module("usergen:absent")
    declared = load_module("usergen:make")
    with pytest.raises(BadDataError, match="latents have 8 dimensions but the generator declares latent_dim 6") as dim:
        check_generator(declared, 8)
    assert "usergen.py" in str(dim.value)
    with pytest.raises(BadDataError, match="fails on latents of dimension 8"):
        check_generator(load_module("usergen:undeclared"), 8)
    with pytest.raises(BadDataError, match=r"returned shape \(2, 12, 12, 3\), expected images \(2, 3, H, W\)"):
        check_generator(load_module("usergen:channels_last"), 6)
    with pytest.raises(UsageError, match="no generator given"):
        load_module("")


def test_latents_tables_tsv_and_npz(tmp_path):
    ids = [f"face{i}.png" for i in range(4)]
    latents = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    tsv = read_latents(_latents_tsv(tmp_path / "l.tsv", ids, latents, first="image"))
    np.savez(tmp_path / "l.npz", stim_ids=np.array(ids), latents=latents)
    npz = read_latents(tmp_path / "l.npz")
    assert list(tsv.stim_ids) == list(npz.stim_ids) == ids and tsv.dim == 3
    np.testing.assert_allclose(tsv.latents, npz.latents, rtol=1e-6)
    np.testing.assert_allclose(tsv.select(["face2.png", "face0.png"]), latents[[2, 0]], rtol=1e-6)
    assert tsv.missing(["face1.png", "face9.png"]) == ["face9.png"]
    assert tsv.sha256 == hashlib.sha256((tmp_path / "l.tsv").read_bytes()).hexdigest()

    bad = pd.read_csv(tmp_path / "l.tsv", sep="\t", dtype=str)
    bad.loc[2, "z1"] = "n/a"
    bad.to_csv(tmp_path / "nan.tsv", sep="\t", index=False)
    with pytest.raises(BadDataError, match=r"row 3 \('face2.png'\), column 'z1'") as nan:
        read_latents(tmp_path / "nan.tsv")
    assert "nan.tsv" in str(nan.value)
    _latents_tsv(tmp_path / "dup.tsv", [ids[0], ids[0]], latents[:2])
    with pytest.raises(BadDataError, match="'face0.png' has more than one latent"):
        read_latents(tmp_path / "dup.tsv")
    np.savez(tmp_path / "wrong.npz", ids=np.array(ids), latents=latents)
    with pytest.raises(BadDataError, match="need arrays 'stim_ids' and 'latents'"):
        read_latents(tmp_path / "wrong.npz")
    with pytest.raises(MissingInputError, match="latents table does not exist"):
        read_latents(tmp_path / "none.tsv")
    (tmp_path / "l.csv").write_text("a,b\n")
    with pytest.raises(BadDataError, match=".tsv or .npz"):
        read_latents(tmp_path / "l.csv")


def test_latent_similarity_on_a_hand_example():
    decoded = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    true = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 4.0]])
    per_item, chance = latent_similarity(decoded, true)
    # row 1: centred (1, 0, -1) and (-4/3, -1/3, 5/3): r = -3 / (sqrt(2) sqrt(42) / 3) = -9 / sqrt(84)
    np.testing.assert_allclose(per_item["latent_corr"], [1.0, -9 / np.sqrt(84)])
    np.testing.assert_allclose(per_item["latent_similarity"], [1.0, 1 / (1 + 13 / 3)])  # MSE (4 + 0 + 9) / 3
    # mismatched pairs: decoded 0 vs true 1 (r = 3.5 / sqrt(2 * 14/3 * ...)), decoded 1 vs true 0 (r = -1)
    r01 = np.corrcoef(decoded[0], true[1])[0, 1]
    assert chance["latent_corr"] == pytest.approx((r01 - 1.0) / 2)
    assert chance["latent_similarity"] == pytest.approx((1 / (1 + 1 / 3) + 1 / (1 + 8 / 3)) / 2)
    with pytest.raises(BadDataError, match="at least 2 test stimuli"):
        latent_similarity(decoded[:1], true[:1])
    with pytest.raises(BadDataError, match="one shape"):
        latent_similarity(decoded, true[:, :2])


def test_latent_rows_join_the_table_of_the_generated_images():
    rng = np.random.default_rng(0)
    truths = rng.uniform(0, 1, (6, 16, 16, 3)).astype(np.float32)
    true = rng.standard_normal((6, 5))
    decoded = true + 0.3 * rng.standard_normal((6, 5))
    result = evaluate_generated({"latent": [truths * 0.8 + 0.1]}, truths, EvaluationParams(metrics=["pixcorr"]),
                                stim_ids=[f"s{i}" for i in range(6)], features={"latent": (decoded, true)})
    before = list(result.table.columns)
    result = add_latent_metrics(result, decoded, true, "latent")
    rows = result.table.set_index("metric")
    assert list(result.table.columns) == before
    assert rows.loc["latent_corr", "value"] > 0.9 > 0.5 > rows.loc["latent_corr", "chance"]
    assert rows.loc["latent_similarity", "label"] == "Latent similarity 1/(1+MSE)"
    np.testing.assert_allclose(result.per_item["latent_corr"], latent_similarity(decoded, true)[0]["latent_corr"])
    assert "latent_similarity" in result.provenance["Metrics"]
    assert rows.loc["identification_features", "value"] == 1.0


def test_ridge_decoding_recovers_latents_on_simulated_betas():
    """Betas linear in the latents plus noise (single-trial SNR ~0.5 per voxel): decoded test latents correlate
    with the true ones and identify the test stimuli."""
    rng = np.random.default_rng(0)
    n_train, n_test, repeats, dim, n_vox = 200, 20, 3, 8, 300
    latents = rng.standard_normal((n_train + n_test, dim)).astype(np.float32)
    ids = np.array([f"face{i:03d}" for i in range(n_train + n_test)])
    trial_stims = np.concatenate([np.arange(n_train), np.repeat(np.arange(n_train, n_train + n_test), repeats)])
    weights = rng.standard_normal((dim, n_vox)) / np.sqrt(dim)
    betas = latents[trial_stims] @ weights + 2.0 * rng.standard_normal((len(trial_stims), n_vox))
    trials = pd.DataFrame({"stim_id": ids[trial_stims],
                           "split": np.where(trial_stims < n_train, "train", "test")})
    _, decoded = train_and_decode(betas.astype(np.float32), trials, np.arange(n_vox), ids, latents, DecodingParams())
    per_item, chance = latent_similarity(decoded.decoded, decoded.true)
    assert per_item["latent_corr"].mean() > 0.8 and chance["latent_corr"] < 0.3
    from bids_recon.evaluate.metrics import two_way_identification

    assert two_way_identification(decoded.decoded, decoded.true).mean() > 0.95


def test_a_generator_and_latents_table_made_by_hand_run_the_latent_path(usergen, tmp_path):
    """The domain's check and generation path on a generator and a table made here (not by the simulator)."""
    bids = tmp_path / "ds"
    (bids / "stimuli").mkdir(parents=True)
    ids = [f"img{i:02d}.png" for i in range(10)]
    latents = np.random.default_rng(5).standard_normal((10, 6)).astype(np.float32)
    _latents_tsv(bids / "stimuli" / "latents.tsv", ids, latents)
    _script(usergen.make(), bids / "stimuli" / "gan.pt")
    params = LatentParams(generator="stimuli/gan.pt")  # relative to the raw dataset, as the default latents table
    found = stimulus_latents(params, ids[::-1], bids)
    assert list(found.stim_ids) == sorted(ids) and set(found.source) == {"table"}
    np.testing.assert_allclose(found.latents, latents, rtol=1e-6)
    assert found.provenance["LatentsFromTable"] == 10 and found.provenance["LatentDimension"] == 6
    checked = check_latent_inputs(params, ids, bids)
    images = generate_images(checked.generator, found.latents, params.output_range, params.batch_size)
    with torch.no_grad():
        expected = (usergen.make()(torch.from_numpy(latents)).permute(0, 2, 3, 1).numpy() + 1) / 2
    np.testing.assert_allclose(images, expected, atol=1e-6)

    with pytest.raises(BadDataError, match=r"1 of the 11 stimuli have no latent \(first: img99.png\)") as absent:
        check_latent_inputs(params, [*ids, "img99.png"], bids)
    assert "latents.tsv" in str(absent.value) and _exit(absent.value) == 65
    _latents_tsv(bids / "stimuli" / "short.tsv", ids, latents[:, :5])
    with pytest.raises(BadDataError, match="5 dimensions but the generator declares latent_dim 6") as dim:
        check_latent_inputs(LatentParams(generator="stimuli/gan.pt", latents="stimuli/short.tsv"), ids, bids)
    assert "gan.pt" in str(dim.value)
    with pytest.raises(UsageError, match="needs an encoder"):
        check_latent_inputs(LatentParams(generator="stimuli/gan.pt", missing="encode"), ids, bids)
    with pytest.raises(BadDataError, match="not differentiable"):  # inversion asked for: refused before any work
        check_latent_inputs(LatentParams(generator="usergen:frozen", missing="invert"), [*ids, "img99.png"], bids)
    identity = checked.generator.identity()
    assert stimulus_latents(params, ids, bids, identity=identity).latents.shape == (10, 6)
    with pytest.raises(BadDataError, match="changed since the workflow was built"):
        stimulus_latents(params, ids, bids, identity={**identity, "GeneratorSHA256": "0" * 64})


def test_inversion_recovers_the_latents_of_a_differentiable_generator(usergen):
    generator = load_module("usergen:make")
    latents = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    images = generate_images(generator, latents)
    found = invert_latents(generator, images, 6, steps=150, lr=0.1, seed=7, batch_size=3)
    assert (found.losses < found.initial_losses / 20).all()
    assert np.corrcoef(found.latents.ravel(), latents.ravel())[0, 1] > 0.95
    again = invert_latents(generator, images, 6, steps=150, lr=0.1, seed=7, batch_size=4)  # batching changes nothing
    np.testing.assert_allclose(again.latents, found.latents, atol=1e-4)

    class Frozen(torch.nn.Module):
        def forward(self, z):
            with torch.no_grad():
                return torch.zeros(z.shape[0], 3, 12, 12)

    frozen = load_module("usergen:make")
    frozen.module = Frozen()
    with pytest.raises(BadDataError, match="not differentiable"):
        invert_latents(frozen, images, 6, steps=2)


def test_missing_latents_estimated_by_inversion_or_an_encoder(usergen, tmp_path):
    bids = tmp_path / "ds"
    (bids / "stimuli").mkdir(parents=True)
    ids = ["a.png", "b.png", "c.png"]
    latents = np.random.default_rng(3).standard_normal((3, 6)).astype(np.float32)
    _latents_tsv(bids / "stimuli" / "latents.tsv", ids[:2], latents[:2])
    seen = generate_images(load_module("usergen:make"), latents)

    def load_images(stim_ids, size):
        assert size == 12
        return seen[[ids.index(s) for s in stim_ids]]

    params = LatentParams(generator="usergen:make", missing="invert", inversion_steps=150, inversion_lr=0.1)
    found = stimulus_latents(params, ids, bids, load_images)
    assert list(found.source) == ["table", "table", "inverted"]
    assert found.provenance["Inversion"]["FinalLoss"]["c.png"] < found.provenance["Inversion"]["InitialLoss"]["c.png"]
    assert np.corrcoef(found.latents[2], latents[2])[0, 1] > 0.9

    encoder = load_module("usergen:make")  # anything with an (n, 3, 12, 12) -> (n, 6) forward will do
    encoder.module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 6))
    np.testing.assert_equal(encode_latents(encoder, seen, (12, 12), 6).shape, (3, 6))
    with pytest.raises(BadDataError, match=r"expected finite latents \(3, 5\)"):
        encode_latents(encoder, seen, (12, 12), 5)


def test_roi_names_union_and_labels():
    names = ["earlyvisual", "highervisual", "ffa"]
    assert resolve_rois("visual", names) == names and roi_label("visual", names) == "visual"
    assert resolve_rois("ffa", names) == ["ffa"] and roi_label("ffa", names) == "ffa"
    assert resolve_rois("earlyvisual+ffa", names) == ["earlyvisual", "ffa"]
    assert resolve_rois("visual", ["visual", "v1"]) == ["visual"]  # an ROI named 'visual' is used as it is
    with pytest.raises(UsageError, match="'v4' is not an ROI") as bad:
        resolve_rois("earlyvisual+v4", names)
    assert _exit(bad.value) == int(ExitCode.USAGE)


def test_the_roi_union_is_every_voxel_of_the_rois(tmp_path):
    import nibabel as nib

    from bids_recon.rois import roi_union

    a, b = np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8)
    a[0, :2] = 1
    b[0, 1:3] = 1
    union = roi_union([nib.Nifti1Image(a, np.eye(4)), nib.Nifti1Image(b, np.eye(4))])
    assert int(np.asarray(union.dataobj).sum()) == 12
    with pytest.raises(BadDataError, match="different grids"):
        roi_union([nib.Nifti1Image(a, np.eye(4)), nib.Nifti1Image(b, 2 * np.eye(4))])


def test_a_torch_export_archive_loads_like_torchscript(usergen, tmp_path):
    model = usergen.make()
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (torch.zeros(2, 6),), dynamic_shapes={"z": {0: batch}}),
                          str(tmp_path / "g.pt2"))
    loaded = load_module(str(tmp_path / "g.pt2"))
    assert loaded.kind == "export" and loaded.state_sha256 == load_module("usergen:make").state_sha256
    assert check_generator(loaded, 6) == (12, 12)
    latents = np.random.default_rng(4).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_allclose(generate_images(loaded, latents), generate_images(load_module("usergen:make"), latents),
                               atol=1e-6)


# ------------------------------------------------------------------------------------------------------------------
# the simulator's faces layout, and the command line's preflight on it


@pytest.fixture(scope="module")
def faces_dataset(tmp_path_factory):
    from bids_recon.sim import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("faces") / "ds", preset="tiny", seed=0, layout="faces",
                            n_subjects=1)


def test_faces_layout_writes_the_generator_and_latents_behind_its_stimuli(faces_dataset):
    from PIL import Image

    from bids_recon.sim import load_truth
    from bids_recon.sim.faces import LATENT_DIM

    stimuli = faces_dataset.bids_dir / "stimuli"
    table = read_latents(stimuli / "latents.tsv")
    truth = load_truth(faces_dataset.truth_dir, "01")
    files = list(truth["stimuli"]["stim_file"])  # rows in stim_id order, as the truth's responses
    assert table.dim == LATENT_DIM and sorted(table.stim_ids) == sorted(files)
    latents = table.select(files)
    generator = load_module(str(stimuli / "generator.pt"))
    assert generator.declared_dim == LATENT_DIM and check_generator(generator, LATENT_DIM) == (32, 32)
    made = generate_images(generator, latents)
    pngs = np.stack([np.asarray(Image.open(stimuli / f), np.float32) / 255 for f in files])
    assert np.abs(made - pngs).max() <= 0.5 / 255 + 1e-5  # the PNGs are the generator's output, in 8 bits
    # higher-visual signal voxels respond linearly to the latents, early ones to the pixels
    kind, response = truth["voxel_kind"], truth["response"].astype(np.float64)
    higher = response[:, kind == 2]
    design = np.column_stack([latents, np.ones(len(latents))])

    def r2(y):
        fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
        return 1 - ((y - fitted) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()

    assert (kind == 2).sum() > 20 and r2(higher) > 0.999
    assert r2(response[:, kind == 1]) < 0.99  # early voxels see the latents only through the images
    assert faces_dataset.run_args[:2] == ["--generator", "latent"]
    assert "Layout \"faces\"" in (faces_dataset.bids_dir / "README").read_text()


def test_the_faces_generator_is_reproducible(tmp_path):
    from bids_recon.sim.faces import make_face_stimuli, save_generator

    one = make_face_stimuli(np.random.default_rng(3), 5, 2, 2, 16)
    two = make_face_stimuli(np.random.default_rng(3), 5, 2, 2, 16)
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.latents, two.latents)
    assert save_generator(one.generator, tmp_path / "a.pt").read_bytes() == \
        save_generator(two.generator, tmp_path / "b.pt").read_bytes()
    assert not np.array_equal(one.images[0], one.images[1])


def _preflight(dataset, monkeypatch, *flags: str) -> None:
    """What the command line runs before building the workflow: parse, configure, collect, check."""
    from bids_recon.bids.layout import collect_inputs
    from bids_recon.cli.parser import build_parser
    from bids_recon.cli.run import build_config, check_collected_inputs

    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(dataset.templateflow_dir))
    parser = build_parser()
    args = parser.parse_args([str(dataset.bids_dir), str(dataset.bids_dir.parent / "out"), "participant", "-d",
                              f"fmriprep={dataset.fmriprep_dir}", "--generator", "latent", *flags])
    config = build_config(args, parser)
    ex, wf = config.execution, config.workflow
    inputs = collect_inputs(dataset.bids_dir, dataset.fmriprep_dir, ex.participant_label, ex.session_label,
                            ex.task_id, ex.bids_filters, wf.space, wf.resolution)
    check_collected_inputs(config, inputs)


def test_preflight_refuses_bad_latent_inputs_before_any_work(faces_dataset, tmp_path, monkeypatch, usergen):
    stimuli = faces_dataset.bids_dir / "stimuli"
    generator = ("--latent-generator", str(stimuli / "generator.pt"))
    _preflight(faces_dataset, monkeypatch, *generator)  # the layout as written passes
    table = pd.read_csv(stimuli / "latents.tsv", sep="\t", dtype=str)
    table.iloc[1:].to_csv(tmp_path / "fewer.tsv", sep="\t", index=False)
    table.iloc[:, :-1].to_csv(tmp_path / "short.tsv", sep="\t", index=False)
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 64)
    cases = [
        (("--latents", str(tmp_path / "fewer.tsv"), *generator), 65,
         f"fewer.tsv: 1 of the {len(table)} stimuli have no latent (first: {table.iloc[0, 0]})"),
        (("--latents", str(tmp_path / "short.tsv"), *generator), 65,
         "generator.pt: the latents have 15 dimensions but the generator declares latent_dim 16"),
        (("--latent-generator", str(tmp_path / "junk.pt")), 65, "junk.pt: generator file is not a TorchScript"),
        (("--latent-generator", str(tmp_path / "gone.pt")), 66, "gone.pt: generator file does not exist"),
        (("--latent-generator", "usergen:channels_last_faces"), 65, "returned shape (2, 32, 32, 3)"),
        (("--latents", str(tmp_path / "none.npz"), *generator), 66, "none.npz: latents table does not exist"),
        ((*generator, "--latent-roi", "v4"), 64, "'v4' is not an ROI"),
        ((), 64, "no generator given"),
    ]
    for flags, code, words in cases:
        with pytest.raises(BidsReconError) as error:
            _preflight(faces_dataset, monkeypatch, *flags)
        assert (int(error.value.exit_code), words) == (code, words) and words in str(error.value), str(error.value)
