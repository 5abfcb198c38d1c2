"""EigenRidge against himalaya, brute-force leave-one-out, the expanded-targets computation and its torch backend."""

from __future__ import annotations

import numpy as np
import pytest

from bids_recon.decoding import EigenRidge, RidgeDecoder, fit_ridge_decoder, solve_ridge, train_and_decode
from bids_recon.decoding.params import DecodingParams
from bids_recon.errors import BadDataError, UsageError

ALPHAS = np.logspace(-1, 5, 7)


def _problem(n: int, p: int, t: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs with correlated columns and targets of varied signal-to-noise (so alphas differ across targets)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) @ (np.eye(p) + 0.3 * rng.standard_normal((p, p)) / np.sqrt(p)) + 2.0
    weights = rng.standard_normal((p, t)) / np.sqrt(p)
    y = x @ weights * np.linspace(0.1, 3, t) + rng.standard_normal((n, t)) + 5.0
    return x, y


@pytest.mark.parametrize("n, p", [(90, 30), (40, 100)])  # primal (RidgeCV) and kernel (KernelRidgeCV) forms
def test_kfold_chooses_himalayas_alphas(n, p):
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import r2_score
    from sklearn.model_selection import KFold

    x, y = _problem(n, p)
    ours, solver = solve_ridge(x, y, ALPHAS, cv="kfold", n_folds=5, x_new=x[:10])
    assert solver.dual == (p > n)
    xs = (x - x.mean(0)) / x.std(0)
    params = dict(alphas=ALPHAS, cv=KFold(5), solver_params={"score_func": r2_score})
    model = KernelRidgeCV(kernel="linear", **params) if p > n else RidgeCV(**params)
    model.fit(xs, y - y.mean(0))
    np.testing.assert_allclose(ours.alphas, model.best_alphas_, rtol=1e-6)
    assert len(np.unique(ours.alphas)) >= 3  # a test that alphas per target are really chosen
    np.testing.assert_allclose(ours.cv_scores, model.cv_scores_.ravel(), atol=1e-5)
    theirs = model.predict((x[:10] - x.mean(0)) / x.std(0)) + y.mean(0)
    np.testing.assert_allclose(ours.predictions, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def _brute_loo_r2(xs: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Refit without each sample (mean re-estimated, as the centring is), score the left-out one."""
    n, p = xs.shape
    error = np.zeros(y.shape[1])
    for i in range(n):
        keep = np.arange(n) != i
        xm, ym = xs[keep].mean(0), y[keep].mean(0)
        xc, yc = xs[keep] - xm, y[keep] - ym
        w = np.linalg.solve(xc.T @ xc + alpha * np.eye(p), xc.T @ yc)
        error += (y[i] - (xs[i] - xm) @ w - ym) ** 2
    return 1 - error / ((y - y.mean(0)) ** 2).sum(0)


@pytest.mark.parametrize("n, p", [(30, 8), (16, 40)])
def test_loo_and_gcv_equal_brute_force(n, p):
    x, y = _problem(n, p, t=5, seed=1)
    alphas = np.logspace(0, 3, 4)
    xs = (x - x.mean(0)) / x.std(0)
    brute = np.stack([_brute_loo_r2(xs, y, a) for a in alphas])
    loo, _ = solve_ridge(x, y, alphas, cv="loo")
    np.testing.assert_allclose(loo.alphas, alphas[brute.argmax(0)])
    np.testing.assert_allclose(loo.cv_scores, brute.max(0), atol=1e-4)
    # GCV: mean squared residual over (1 - trace(H) / n)^2, H including the centring
    yc = y - y.mean(0)
    gcv = []
    for a in alphas:
        hat = xs @ np.linalg.solve(xs.T @ xs + a * np.eye(p), xs.T) + 1.0 / n
        residual = yc - (hat - 1.0 / n) @ yc
        gcv.append(1 - (residual**2).mean(0) / (1 - np.trace(hat) / n) ** 2 / yc.var(0))
    gcv = np.stack(gcv)
    ours, _ = solve_ridge(x, y, alphas, cv="gcv")
    np.testing.assert_allclose(ours.alphas, alphas[gcv.argmax(0)])
    np.testing.assert_allclose(ours.cv_scores, gcv.max(0), atol=1e-4)
    # the refit is plain ridge at the chosen alpha
    direct = np.stack([np.linalg.solve(xs.T @ xs + a * np.eye(p), xs.T @ yc[:, j]) for j, a in enumerate(ours.alphas)],
                      axis=1)
    np.testing.assert_allclose(ours.weights, direct, rtol=1e-4, atol=1e-5 * np.abs(direct).max())


@pytest.mark.parametrize("cv", ["gcv", "loo", "kfold"])
@pytest.mark.parametrize("n, p", [(120, 25), (60, 150)])
def test_repeated_stimuli_never_expand_the_targets(cv, n, p, tmp_path):
    """With trials repeating stimuli, X'Y = (G'X)'F from per-stimulus targets (here memory-mapped, read in
    batches) gives what the targets expanded per trial give."""
    rng = np.random.default_rng(2)
    n_stimuli = n // 3
    rows = rng.permutation(np.tile(np.arange(n_stimuli), 3))
    latent = rng.standard_normal((n_stimuli + 5, 4))  # 5 extra stimuli (e.g. the test set) no trial reads
    x = latent[rows] @ rng.standard_normal((4, p)) + rng.standard_normal((n, p))
    features = latent @ rng.standard_normal((4, 9)) * np.linspace(0.1, 2, 9) + rng.standard_normal((n_stimuli + 5, 9))
    np.save(tmp_path / "features.npy", features.astype(np.float32))
    mapped = np.load(tmp_path / "features.npy", mmap_mode="r")
    per_stimulus, _ = solve_ridge(x, mapped, ALPHAS, target_rows=rows, cv=cv, x_new=x[:6], batch_size=4)
    expanded, _ = solve_ridge(x, features[rows], ALPHAS, cv=cv, x_new=x[:6])
    np.testing.assert_array_equal(per_stimulus.alphas, expanded.alphas)
    np.testing.assert_allclose(per_stimulus.weights, expanded.weights, atol=1e-5)
    np.testing.assert_allclose(per_stimulus.cv_scores, expanded.cv_scores, atol=1e-5)
    np.testing.assert_allclose(per_stimulus.predictions, expanded.predictions, atol=1e-5)
    assert per_stimulus.info["RepeatedTargets"] and per_stimulus.info["BatchSize"] == 4


@pytest.mark.parametrize("cv", ["gcv", "loo", "kfold"])
@pytest.mark.parametrize("n, p", [(100, 30), (40, 90)])
def test_torch_backend_equals_numpy(cv, n, p):
    pytest.importorskip("torch")
    x, y = _problem(n, p, seed=3)
    rows = np.random.default_rng(3).integers(0, n // 2, n)
    alphas = np.logspace(1, 5, 5)  # away from the interpolating limit, where float32 rounding decides
    ours, _ = solve_ridge(x, y[: n // 2], alphas, target_rows=rows, cv=cv, x_new=x[:5])
    theirs, solver = solve_ridge(x, y[: n // 2], alphas, target_rows=rows, cv=cv, x_new=x[:5], backend="torch")
    assert solver.info()["Backend"] == "torch" and solver.info()["Device"] == "cpu"
    np.testing.assert_array_equal(ours.alphas, theirs.alphas)
    scale = np.abs(ours.weights).max()
    np.testing.assert_allclose(theirs.weights, ours.weights, atol=1e-5 * scale)
    np.testing.assert_allclose(theirs.cv_scores, ours.cv_scores, atol=1e-5)
    np.testing.assert_allclose(theirs.predictions, ours.predictions, rtol=1e-5, atol=1e-4)


def test_precomputed_kernel_equals_inputs():
    x, y = _problem(50, 120, seed=4)
    xs = (x - x.mean(0)) / x.std(0)
    new = x[:7]
    alphas = np.logspace(1, 5, 5)  # away from the interpolating limit, where float32 rounding decides
    ours, _ = solve_ridge(x, y, alphas, x_new=new)
    kernel, _ = solve_ridge(xs @ xs.T, y, alphas, precomputed=True, return_weights=False,
                            x_new=((new - x.mean(0)) / x.std(0)) @ xs.T)
    np.testing.assert_array_equal(ours.alphas, kernel.alphas)
    np.testing.assert_allclose(ours.predictions, kernel.predictions, atol=1e-4)
    with pytest.raises(UsageError, match="no weights"):
        solve_ridge(xs @ xs.T, y, ALPHAS, precomputed=True)


def test_constant_targets_and_columns():
    x, y = _problem(60, 10, t=4, seed=5)
    x[:, 3] = 7.0  # a constant voxel
    y[:, 1] = 0.25  # a constant target (e.g. the BOS token of c)
    for cv in ("gcv", "loo", "kfold"):
        fit, solver = solve_ridge(x, y, ALPHAS, cv=cv)
        assert fit.constant.tolist() == [False, True, False, False]
        assert fit.cv_scores[1] == 0 and np.all(fit.weights[:, 1] == 0) and fit.y_mean[1] == np.float32(0.25)
        assert np.abs(fit.weights[3]).max() < 1e-6 * np.abs(fit.weights).max() and solver.x_scale[3] == 1
        assert np.all(np.isfinite(fit.cv_scores))


def test_input_checks():
    x, y = _problem(30, 5)
    with pytest.raises(UsageError, match="cv must be one of"):
        EigenRidge(x, ALPHAS, cv="bootstrap")
    with pytest.raises(UsageError, match="positive"):
        EigenRidge(x, [0.0, 1.0])
    with pytest.raises(BadDataError, match="target_rows"):
        EigenRidge(x, ALPHAS, target_rows=np.zeros(29, dtype=int))
    with pytest.raises(BadDataError, match="NaN"):
        EigenRidge(np.where(x > 2, np.nan, x), ALPHAS)
    solver = EigenRidge(x, ALPHAS, target_rows=np.arange(30) % 10)
    with pytest.raises(BadDataError, match="rows"):
        solver.fit(y[:5])
    bad = y[:10].copy()
    bad[3, 2] = np.nan
    with pytest.raises(BadDataError, match="NaN"):
        solver.fit(bad)
    with pytest.raises(BadDataError, match="30 samples"):
        EigenRidge(x, ALPHAS).fit(y[:29])
    with pytest.raises(BadDataError, match="29 target rows"):
        fit_ridge_decoder(x, y[:29], np.arange(5), DecodingParams(alphas=list(ALPHAS)))
    with pytest.raises(UsageError, match="numpy ridge backend runs on the CPU"):
        EigenRidge(x, ALPHAS, backend="numpy", device="cuda")


def test_decoder_uses_the_solver_and_saves_as_before(tmp_path):
    x, y = _problem(80, 20, seed=6)
    decoder = fit_ridge_decoder(x, y, np.arange(20), DecodingParams(alphas=list(ALPHAS), cv_folds=5))
    assert decoder.info["Solver"] == "bids_recon.EigenRidge" and decoder.info["CVKind"] == "gcv"
    assert "generalised cross-validation" in decoder.info["Description"]
    path = decoder.save(tmp_path / "decoder.npz", {"ROI": "v1"})
    with np.load(path) as data:  # the arrays the report and generators read are all still there
        assert {"weights", "alphas", "cv_scores", "x_mean", "x_scale", "y_mean", "voxel_indices"} <= set(data.files)
    loaded = RidgeDecoder.load(path)
    np.testing.assert_array_equal(loaded.predict(x[:5]), decoder.predict(x[:5]))
    assert loaded.info["CVKind"] == "gcv"
    kfold = fit_ridge_decoder(x, y, np.arange(20), DecodingParams(alphas=list(ALPHAS), cv_folds=4, cv="kfold"))
    himalaya = fit_ridge_decoder(x, y, np.arange(20), DecodingParams(alphas=list(ALPHAS), cv_folds=4,
                                                                     solver="himalaya"))
    np.testing.assert_allclose(kfold.alphas, himalaya.alphas, rtol=1e-6)
    np.testing.assert_allclose(kfold.predict(x[:5]), himalaya.predict(x[:5]), rtol=1e-4, atol=1e-4)
    assert kfold.info["CVFolds"] == 4 and himalaya.info["CVFolds"] == 4


def test_himalaya_backend_is_restored(monkeypatch):
    pytest.importorskip("torch")
    from himalaya.backend import get_backend, set_backend
    from himalaya.ridge import RidgeCV

    x, y = _problem(40, 8)
    previous = get_backend().name
    try:
        set_backend("torch")
        fit_ridge_decoder(x, y, np.arange(8), DecodingParams(alphas=list(ALPHAS), cv_folds=3, solver="himalaya"))
        assert get_backend().name == "torch"

        def fail(*args, **kwargs):
            assert get_backend().name == "numpy"  # the decoder's own backend while it fits
            raise RuntimeError("fit failed")

        monkeypatch.setattr(RidgeCV, "fit", fail)
        with pytest.raises(RuntimeError, match="fit failed"):
            fit_ridge_decoder(x, y, np.arange(8), DecodingParams(alphas=list(ALPHAS), cv_folds=3, solver="himalaya"))
        assert get_backend().name == "torch"  # given back on failure too
    finally:
        set_backend(previous)


def test_train_and_decode_reads_features_per_stimulus(tmp_path):
    """train_and_decode hands per-stimulus features (memory-mapped) to the solver with the trial map."""
    import pandas as pd

    rng = np.random.default_rng(7)
    n_stimuli, n_voxels = 40, 30
    stims = np.array([f"s{i:02d}.png" for i in range(n_stimuli)])
    shown = np.concatenate([np.tile(np.arange(30), 3), np.repeat(np.arange(30, 40), 2)])
    trials = pd.DataFrame({"stim_id": stims[shown], "split": np.where(shown >= 30, "test", "train")})
    latent = rng.standard_normal((n_stimuli, 3))
    betas = (latent[shown] @ rng.standard_normal((3, n_voxels)) + 0.5 * rng.standard_normal((len(shown), n_voxels)))
    features = latent @ rng.standard_normal((3, 6))
    np.save(tmp_path / "f.npy", features.astype(np.float32))
    decoder, decoded = train_and_decode(betas.astype(np.float32), trials, np.arange(n_voxels), stims,
                                        np.load(tmp_path / "f.npy", mmap_mode="r"), DecodingParams(alphas=list(ALPHAS)))
    assert decoder.info["RepeatedTargets"] and decoded.decoded.shape == (10, 6)
    assert (decoded.n_trials == 2).all()
    r = [np.corrcoef(decoded.decoded[:, j], decoded.true[:, j])[0, 1] for j in range(6)]
    assert np.median(r) > 0.8, r
