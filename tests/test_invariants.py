"""Invariants between stages: each check catches what it is for, and the sessionless z-scoring bug cannot return."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from nipype.interfaces.base import BaseInterfaceInputSpec, TraitedSpec

from bids_recon.design import TRIAL_COLUMNS, read_trials, run_tables
from bids_recon.errors import ExitCode, InvariantError
from bids_recon.glm.runs import combine_runs
from bids_recon.glm.singletrial import zscore_by_group
from bids_recon.interfaces.base import RecordingInterface
from bids_recon.invariants import (
    check_betas,
    check_features,
    check_finite,
    check_metric_table,
    check_standardised,
    check_trial_table,
)
from bids_recon.io import write_tsv


class EmptyMean(RecordingInterface):
    """A node that averages nothing (numpy: "Mean of empty slice")."""

    input_spec, output_spec = BaseInterfaceInputSpec, TraitedSpec

    def _run(self, runtime):
        np.mean(np.zeros(0))


def _run_table(run: str, stims: list[str], session: str | None = None, split: list[str] | None = None):
    return pd.DataFrame({
        "subject": "01", "session": session if session is not None else "n/a", "task": "x", "run": run,
        "trial_index": np.arange(len(stims)), "onset": 4.0 * np.arange(len(stims)), "duration": 1.0,
        "stim_id": stims, "stim_file": stims, "repeat": 0, "split": split or ["train"] * len(stims),
    })[TRIAL_COLUMNS]


def test_sessionless_tables_read_back_give_standardised_betas(tmp_path):
    """The December 2026 bug: a dataset without ses- wrote session 'n/a', pandas read it back as NaN, NaN never
    equals NaN, and np.empty_like's output was never filled. Read back from disk, the betas must be z-scored."""
    rng = np.random.default_rng(0)
    tables, betas = [], []
    for run in ("01", "02"):
        stims = [f"s{run}{k:02d}" for k in range(12)] + ["t0", "t1", "t2"]
        path = write_tsv(tmp_path / f"run{run}.tsv", _run_table(run, stims))
        tables.append(read_trials(path))
        betas.append((rng.normal(3.0, 2.0, (len(stims), 40))).astype(np.float32))
    assert set(tables[0]["session"]) == {"n/a"}  # a label, not NaN
    stacked, table = combine_runs(betas, tables, test_min_repeats=2, zscore=True)
    assert np.isfinite(stacked).all() and stacked.shape == (30, 40)
    np.testing.assert_allclose(stacked.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(stacked.std(axis=0), 1, atol=1e-4)
    check_betas(stacked, "z-scored betas", n_trials=len(table), n_voxels=40, groups=table["session"].to_numpy())


def test_zscoring_refuses_missing_group_labels_and_fills_every_row():
    betas = np.arange(24, dtype=np.float32).reshape(6, 4)
    with pytest.raises(InvariantError, match="'labels' broken") as err:
        zscore_by_group(betas, np.array(["a", np.nan, "a", "b", "b", None], dtype=object))
    assert err.value.exit_code == ExitCode.INTERNAL == 70
    out = zscore_by_group(betas, np.array(["a", "a", "a", "b", "b", "b"]))
    check_standardised(out, np.array(["a"] * 3 + ["b"] * 3), "z-scores")
    constant = zscore_by_group(np.ones((4, 2), np.float32), np.array(["x"] * 4))
    assert (constant == 0).all()  # a constant voxel is 0, never garbage


def test_each_check_catches_its_violation(tmp_path):
    table = _run_table("01", ["a", "b", "a"])
    betas = np.zeros((3, 5), np.float32)
    check_betas(betas, "betas", tmp_path / "b.npy", n_trials=3, n_voxels=5)
    with pytest.raises(InvariantError, match=r"b\.npy: betas: invariant 'shape' broken: shape 3 x 5 but 4 x 5"):
        check_betas(betas, "betas", tmp_path / "b.npy", n_trials=4, n_voxels=5)
    bad = betas.copy()
    bad[2, 3] = np.nan
    with pytest.raises(InvariantError, match="'finite' broken: 1 of 15 values .*row 2, column 3"):
        check_finite(bad, "betas")
    memmap = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.float32, shape=(3, 5))
    memmap[1, 4] = np.inf
    with pytest.raises(InvariantError, match="row 1, column 4"):
        check_finite(memmap, "betas")
    with pytest.raises(InvariantError, match="'standardised' broken"):
        check_standardised(np.array([[1.0], [2.0], [3.0]]), np.array(["g"] * 3), "z")
    check_trial_table(table, n_rows=3)
    for column, value, invariant in (("session", np.nan, "labels"), ("split", "held-out", "split"),
                                     ("onset", np.inf, "times"), ("repeat", -1, "repeat")):
        broken = table.astype({column: object}).copy()
        broken.loc[1, column] = value
        with pytest.raises(InvariantError, match=f"'{invariant}' broken"):
            check_trial_table(broken)
    with pytest.raises(InvariantError, match="'rows' broken"):
        check_trial_table(table, n_rows=2)
    with pytest.raises(InvariantError, match="appear twice"):
        check_features(np.array(["a", "a"]), np.zeros((2, 3)), "features")
    with pytest.raises(InvariantError, match="'finite' broken: 1 computed metrics .*pixcorr"):
        check_metric_table(pd.DataFrame({"metric": ["pixcorr", "ssim"], "value": [np.nan, 0.3],
                                         "status": ["ok", "ok"]}))
    check_metric_table(pd.DataFrame({"metric": ["clip"], "value": [np.nan], "status": ["not computed"]}))


def test_run_tables_carry_the_real_split_and_repeat():
    """The per-run .tsv beside each statmap once said train and repeat 0 on every row."""
    runs = [_run_table("01", ["a", "b", "t", "c", "d", "u", "e", "f"], "01"),
            _run_table("02", ["t", "catch", "g", "u", "h", "i", "j", "k"], "01")]
    runs[1].loc[1, "split"] = "none"  # a catch image: modelled, never decoded
    betas = [np.random.default_rng(k).normal(size=(8, 3)).astype(np.float32) for k in range(2)]
    _, table = combine_runs(betas, runs, test_min_repeats=2, zscore=False)
    per_run = run_tables(runs, table)
    assert list(per_run[0]["split"]) == ["train", "train", "test", "train", "train", "test", "train", "train"]
    assert list(per_run[1]["split"][:4]) == ["test", "none", "train", "test"]
    assert list(per_run[1]["repeat"].astype(object)[:4]) == [1, pd.NA, 0, 1]
    assert set(per_run[0]["repeat"]) == {0}
    with pytest.raises(InvariantError, match="'rows' broken"):
        run_tables(runs, table.iloc[1:])


def test_a_node_names_itself_in_an_invariant_error_and_turns_runtime_warnings_into_one(tmp_path, monkeypatch):
    """Inside a workflow node a broken invariant or a numpy RuntimeWarning stops the node with exit 70, naming it."""
    from nipype.pipeline import engine as pe

    from bids_recon.errors import ERROR_DIR_ENV, read_errors

    monkeypatch.setenv(ERROR_DIR_ENV, str(tmp_path / "errors"))
    wf = pe.Workflow("bids_recon_wf", base_dir=str(tmp_path))
    wf.config["execution"]["crashdump_dir"] = str(tmp_path / "crash")
    wf.add_nodes([pe.Node(EmptyMean(), name="averaging")])
    with pytest.raises(RuntimeError):
        wf.run(plugin="Linear")
    (record,) = read_errors(str(tmp_path / "errors"))
    assert record["code"] == 70 and record["where"] == "bids_recon_wf.averaging"
    assert "node bids_recon_wf.averaging" in record["message"] and "Mean of empty slice" in record["message"]
