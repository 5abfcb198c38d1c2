"""``--confounds``: fMRIPrep groups resolved on real confounds headers, defaults that use what a table has, errors
that name the setting, and the non-steady-state spikes that keep dummy scans out of the betas."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_recon.config import Config
from bids_recon.design.confounds import MOTION, load_confounds, parse_confounds, resolve_confounds
from bids_recon.errors import BadDataError, UsageError
from bids_recon.glm import GlmParams, RunFiles, estimate_session_betas
from bids_recon.glm.hrf import canonical_library, trial_regressors
from tests.conftest import run_cli

# fMRIPrep 21.0's header, as nilearn ships a real table of it (nilearn/interfaces/fmriprep/data/
# test-v21_desc-confounds_timeseries.tsv): a_comp_cor_* of the combined mask, c_comp_cor_* CSF, w_comp_cor_* WM.
FMRIPREP_21 = (
    "global_signal global_signal_derivative1 global_signal_derivative1_power2 global_signal_power2 csf "
    "csf_derivative1 csf_derivative1_power2 csf_power2 white_matter white_matter_derivative1 "
    "white_matter_derivative1_power2 white_matter_power2 csf_wm tcompcor std_dvars dvars framewise_displacement rmsd "
    "t_comp_cor_00 t_comp_cor_01 t_comp_cor_02 c_comp_cor_00 c_comp_cor_01 c_comp_cor_02 w_comp_cor_00 w_comp_cor_01 "
    "w_comp_cor_02 w_comp_cor_03 a_comp_cor_00 a_comp_cor_01 a_comp_cor_02 a_comp_cor_03 a_comp_cor_04 cosine00 "
    "non_steady_state_outlier00 non_steady_state_outlier01 non_steady_state_outlier02 trans_x trans_x_derivative1 "
    "trans_x_power2 trans_x_derivative1_power2 trans_y trans_y_derivative1 trans_y_derivative1_power2 trans_y_power2 "
    "trans_z trans_z_derivative1 trans_z_power2 trans_z_derivative1_power2 rot_x rot_x_derivative1 rot_x_power2 "
    "rot_x_derivative1_power2 rot_y rot_y_derivative1 rot_y_power2 rot_y_derivative1_power2 rot_z rot_z_derivative1 "
    "rot_z_power2 rot_z_derivative1_power2"
).split() + [f"motion_outlier{i:02d}" for i in range(23)]
# Its sidecar's Mask per component, as OpenNeuroDerivatives/ds002422-fmriprep (fMRIPrep 21.0.2) writes them.
FMRIPREP_21_SIDECAR = {
    **{f"a_comp_cor_{i:02d}": {"Mask": "combined", "Method": "aCompCor", "Retained": True} for i in range(5)},
    **{f"c_comp_cor_{i:02d}": {"Mask": "CSF", "Method": "aCompCor", "Retained": True} for i in range(3)},
    **{f"w_comp_cor_{i:02d}": {"Mask": "WM", "Method": "aCompCor", "Retained": True} for i in range(4)},
    **{f"t_comp_cor_{i:02d}": {"Method": "tCompCor", "Retained": True} for i in range(3)},
    "dropped_0": {"Mask": "combined", "Method": "aCompCor", "Retained": False},
}
# fMRIPrep 1.4 to 20.x: one a_comp_cor_ numbering over the three masks (nilearn's test_desc-confounds_regressors.tsv,
# a real table: 126 components, combined 00-56, CSF 57-69, WM 70-125 by its sidecar), no non-steady-state volume.
FMRIPREP_14 = (
    "csf csf_derivative1 csf_power2 csf_derivative1_power2 white_matter white_matter_derivative1 "
    "white_matter_derivative1_power2 white_matter_power2 global_signal global_signal_derivative1 global_signal_power2 "
    "global_signal_derivative1_power2 std_dvars dvars framewise_displacement".split()
    + [f"t_comp_cor_{i:02d}" for i in range(6)] + [f"a_comp_cor_{i:02d}" for i in range(126)]
    + "cosine00 cosine01 cosine02 cosine03 trans_x trans_x_derivative1 trans_x_power2 trans_x_derivative1_power2 "
      "trans_y trans_y_derivative1 trans_y_derivative1_power2 trans_y_power2 trans_z trans_z_derivative1 "
      "trans_z_power2 trans_z_derivative1_power2 rot_x rot_x_derivative1 rot_x_derivative1_power2 rot_x_power2 rot_y "
      "rot_y_derivative1 rot_y_derivative1_power2 rot_y_power2 rot_z rot_z_derivative1 rot_z_power2 "
      "rot_z_derivative1_power2 aroma_motion_01 aroma_motion_02".split()
)
FMRIPREP_14_SIDECAR = {f"a_comp_cor_{i:02d}": {"Mask": "combined" if i < 57 else "CSF" if i < 70 else "WM",
                                               "Method": "aCompCor", "Retained": True} for i in range(126)}
# fMRIPrep 1.0 (BOLD5000's ds001499 *_bold_confounds.tsv): CamelCase names, no sidecar.
FMRIPREP_10 = ("CSF WhiteMatter GlobalSignal stdDVARS non-stdDVARS vx-wisestdDVARS FramewiseDisplacement".split()
               + [f"tCompCor{i:02d}" for i in range(6)] + [f"aCompCor{i:02d}" for i in range(6)]
               + "X Y Z RotX RotY RotZ".split())


def _table(path: Path, columns: list[str], n: int = 4, seed: int = 0) -> Path:
    """A confounds TSV with ``columns``, ``n/a`` in the first row of derivative columns as fMRIPrep writes."""
    values = np.random.default_rng(seed).normal(size=(n, len(columns)))
    table = pd.DataFrame(values, columns=columns).astype(object)
    first_na = ("framewise_displacement", "dvars", "std_dvars", "FramewiseDisplacement", "stdDVARS", "non-stdDVARS",
                "vx-wisestdDVARS")
    table.loc[0, [c for c in columns if "derivative" in c or c in first_na]] = "n/a"
    table.to_csv(path, sep="\t", index=False)
    return path


def test_groups_resolve_on_real_fmriprep_headers():
    auto = resolve_confounds(FMRIPREP_21, ["auto"], FMRIPREP_21_SIDECAR)
    nss = ("non_steady_state_outlier00", "non_steady_state_outlier01", "non_steady_state_outlier02")
    assert auto.columns == (*MOTION, "csf", "white_matter", *nss) and not auto.skipped
    motion24 = resolve_confounds(FMRIPREP_21, ["motion24"]).columns
    assert len(motion24) == 24 and set(motion24) == {c for c in FMRIPREP_21 if c.startswith(("trans_", "rot_"))}
    assert resolve_confounds(FMRIPREP_21, ["motion12"]).columns[6:] == tuple(f"{m}_derivative1" for m in MOTION)
    # acompcor:K: the combined mask's components by the sidecar, never fMRIPrep 21's c_/w_comp_cor
    picked = resolve_confounds(FMRIPREP_21, ["acompcor:5", "tcompcor:2", "cosine", "fd", "global", "wm"],
                               FMRIPREP_21_SIDECAR)
    assert picked.columns == ("a_comp_cor_00", "a_comp_cor_01", "a_comp_cor_02", "a_comp_cor_03", "a_comp_cor_04",
                              "t_comp_cor_00", "t_comp_cor_01", "cosine00", "framewise_displacement",
                              "global_signal", "white_matter")
    assert "combined mask" in picked.notes[0] and "by number" in picked.notes[1]
    with pytest.raises(BadDataError, match=r"acompcor:6 \(the table has 5 components of the combined mask"):
        resolve_confounds(FMRIPREP_21, ["acompcor:6"], FMRIPREP_21_SIDECAR)
    # fMRIPrep 1.4-20.x numbers all masks alike: the sidecar's Mask decides; without it, the first K by number
    assert resolve_confounds(FMRIPREP_14, ["acompcor:57"], FMRIPREP_14_SIDECAR).columns[-1] == "a_comp_cor_56"
    with pytest.raises(BadDataError, match="57 components of the combined mask"):
        resolve_confounds(FMRIPREP_14, ["acompcor:58"], FMRIPREP_14_SIDECAR)
    by_number = resolve_confounds(FMRIPREP_14, ["acompcor:58"])
    assert by_number.columns[-1] == "a_comp_cor_57" and "no Mask" in by_number.notes[0]
    assert resolve_confounds(FMRIPREP_14, ["cosine"]).columns == ("cosine00", "cosine01", "cosine02", "cosine03")
    # no non-steady-state volume: nss is empty, not missing, even when named
    assert resolve_confounds(FMRIPREP_14, ["motion6", "nss"]).used["nss"] == ()


def test_legacy_names_and_na_cells(tmp_path):
    path = _table(tmp_path / "sub-CSI1_ses-01_task-5000scenes_run-01_bold_confounds.tsv", FMRIPREP_10)
    values, choice = load_confounds(path, ["auto", "acompcor:6", "fd", "RotZ", "tCompCor05"], 4)
    assert choice.columns[:8] == (*MOTION, "csf", "white_matter") and choice.used["nss"] == ()
    assert choice.columns[8:14] == tuple(f"a_comp_cor_{i:02d}" for i in range(6)) and "no Mask" in choice.notes[0]
    raw = pd.read_csv(path, sep="\t")
    assert values["trans_x"].tolist() == raw["X"].tolist() and values["rot_z"].tolist() == raw["RotZ"].tolist()
    assert values["framewise_displacement"].tolist() == [0.0, *raw["FramewiseDisplacement"][1:]]  # n/a -> 0
    assert list(values.columns) == list(choice.columns) and values.shape == (4, 16)
    assert values["t_comp_cor_05"].tolist() == raw["tCompCor05"].tolist()


def test_what_is_named_must_be_there_and_defaults_skip(tmp_path):
    columns = [c for c in FMRIPREP_21 if not c.startswith(("csf", "white_matter"))]
    path = _table(tmp_path / "sub-01_task-a_desc-confounds_timeseries.tsv", columns)
    _, default = load_confounds(path, ["auto"], 4)
    assert default.skipped == {"csf": ("csf",), "wm": ("white_matter",)} and "csf" not in default.columns
    with pytest.raises(BadDataError) as raised:
        load_confounds(path, ["motion6", "csf", "whitematter"], 4)
    message = str(raised.value)
    assert raised.value.exit_code == 65 and message.startswith(str(path))
    assert "--confounds / workflow.glm.confounds names csf, whitematter" in message
    assert "global_signal" in message and "a_comp_cor_00..a_comp_cor_04 (5)" in message  # what the table has
    table = pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    table["global_signal"] = "n/a"
    table.loc[2, "trans_x"] = "1,5"
    table.to_csv(path, sep="\t", index=False)
    with pytest.raises(BadDataError, match="'global_signal' is n/a in every row"):
        load_confounds(path, ["global"], 4)
    with pytest.raises(BadDataError, match="'trans_x' has '1,5' on line 4"):
        load_confounds(path, ["auto"], 4)
    for bad, problem in ((["acompcor"], "acompcor:5"), (["none", "csf"], "cannot be combined"),
                         (["motion6:2"], "only acompcor:K and tcompcor:K")):
        with pytest.raises(UsageError, match=problem):
            parse_confounds(bad)
    with pytest.raises(UsageError, match=r"setting 'workflow.glm.confounds' = \['acompcor:0'\] \(from c.toml\)"):
        Config.from_dict({"workflow": {"glm": {"confounds": ["acompcor:0"]}}}, source="c.toml")


def _run(folder: Path, name: str, data: np.ndarray, shape: tuple, onsets: np.ndarray, motion: np.ndarray,
         n_dummies: int) -> RunFiles:
    """A run's BOLD, events and confounds (motion, and one one-hot column per dummy volume as fMRIPrep marks them)."""
    bold = folder / f"{name}_bold.nii.gz"
    nib.save(nib.Nifti1Image(data.T.reshape(*shape, len(data)).astype(np.float32), np.eye(4)), bold)
    events = folder / f"{name}_events.tsv"
    pd.DataFrame({"onset": onsets, "duration": 1.0, "stim_file": [f"i{i:02d}.png" for i in range(len(onsets))]}
                 ).to_csv(events, sep="\t", index=False)
    table = pd.DataFrame(motion, columns=list(MOTION))
    for k in range(n_dummies):
        table[f"non_steady_state_outlier{k:02d}"] = (np.arange(len(data)) == k).astype(float)
    confounds = folder / f"{name}_desc-confounds_timeseries.tsv"
    table.to_csv(confounds, sep="\t", index=False)
    return RunFiles(bold, events, confounds, 1.5, "01", None, "01")


def test_nss_spikes_keep_dummy_scans_out_of_the_betas(tmp_path):
    """Bright initial volumes (T1 not yet at steady state) with fMRIPrep's one-hot columns: with the default, which
    includes nss, betas match those of the same run without dummy scans; without nss they are ruined."""
    rng = np.random.default_rng(0)
    n_volumes, n_trials, shape = 120, 40, (5, 5, 4)
    onsets = 3.0 + np.concatenate([[0], np.cumsum(rng.uniform(3, 5, n_trials - 1))])
    design = trial_regressors(canonical_library(), onsets, np.ones(n_trials), np.arange(n_volumes) * 1.5)[0]
    amplitudes = rng.normal(1, 1, (n_trials, int(np.prod(shape))))
    data = 1000 * (1 + (design @ amplitudes + rng.normal(0, 0.5, (n_volumes, amplitudes.shape[1]))) / 100)
    motion = rng.normal(0, 0.05, (n_volumes, 6)).cumsum(0)
    dummies = data.copy()
    dummies[:3] *= np.array([3.0, 2.0, 1.5])[:, None]
    mask = nib.Nifti1Image(np.ones(shape, np.uint8), np.eye(4))

    def median_r(files: RunFiles, confounds: list[str]) -> float:
        result = estimate_session_betas([files], mask, GlmParams(estimator="lsa", confounds=confounds), "stim_file")
        betas = result.betas[0]
        return float(np.median([np.corrcoef(betas[:, v], amplitudes[:, v])[0, 1] for v in range(betas.shape[1])]))

    clean = median_r(_run(tmp_path, "clean", data, shape, onsets, motion, 0), ["auto"])
    marked = _run(tmp_path, "dummies", dummies, shape, onsets, motion, 3)
    with_nss, without = median_r(marked, ["auto"]), median_r(marked, ["motion6"])
    assert clean > 0.75 and with_nss > clean - 0.02, (clean, with_nss)
    assert without < clean - 0.3, without  # the check can fail: dummy scans do hurt when not marked


@pytest.fixture
def no_csf_wm(tiny_dataset, tmp_path):
    """A copy of the tiny dataset whose sub-01 confounds tables lack csf and white_matter (and their expansions)."""
    bids = tmp_path / "ds"
    shutil.copytree(tiny_dataset.bids_dir, bids)
    tables = sorted((bids / "derivatives" / "fmriprep" / "sub-01").rglob("*_desc-confounds_timeseries.tsv"))
    for path in tables:
        table = pd.read_csv(path, sep="\t", keep_default_na=False)
        table.drop(columns=[c for c in table if c.startswith(("csf", "white_matter"))]).to_csv(path, sep="\t",
                                                                                                 index=False)
    return bids, tables


def test_check_only_on_tables_without_csf_and_wm(no_csf_wm, tiny_dataset, tmp_path, monkeypatch):
    """The default runs on what the tables have (one log line per participant, the methods say so); naming csf
    stops before any node with exit 65 naming the setting and the file."""
    from bids_recon.cli.run import main

    bids, tables = no_csf_wm
    out = tmp_path / "out"
    common = [str(bids), str(out), "participant", "-d", f"fmriprep={bids / 'derivatives' / 'fmriprep'}", "-w",
              str(tmp_path / "work"), "--participant-label", "01", "--skip-bids-validation", "--check-only"]
    proc = run_cli(common, tiny_dataset.templateflow_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("default confounds skipped") == 1 and len(tables) > 1
    assert f"csf ({len(tables)} of {len(tables)} runs), wm ({len(tables)} of {len(tables)} runs)" in proc.stderr
    citation = next(out.glob("logs/*/CITATION.md")).read_text()
    assert "the 6 motion parameters (trans_x, trans_y, trans_z, rot_x, rot_y, rot_z)" in citation
    assert f"csf (csf absent from {len(tables)} of {len(tables)} runs)" in citation

    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tiny_dataset.templateflow_dir))
    assert main([*common, "--confounds", "motion6", "csf"]) == 65
    log = sorted(out.glob("logs/*/bids_recon.log"))[-1].read_text()
    assert f"{tables[0]}: --confounds / workflow.glm.confounds names csf, not in this confounds table" in log
    assert "Running the workflow" not in log


def test_outputs_record_the_confounds_that_ran(tiny_run):
    """The betas' sidecars, the session's info (the maps' sidecars) and the report name the columns regressed out."""
    from bids_recon.naming import SubjectOutputs

    out, dataset = tiny_run["out"], tiny_run["dataset"]
    assert tiny_run["participant"].returncode == 0, tiny_run["participant"].stderr[-3000:]
    names = SubjectOutputs("01", dataset.task, "MNI152NLin2009cAsym", "2")
    used = [*MOTION, "csf", "white_matter"]  # the simulator writes no non_steady_state_outlier column
    sidecar = json.loads((out / names.betas("01", "01", ".json")).read_text())
    assert sidecar["Confounds"] == used and sidecar["ConfoundsSetting"] == ["auto"]
    assert "ConfoundsSkipped" not in sidecar
    info = json.loads((out / names.stat_map("01", "rsquare", ".json")).read_text())
    assert [run["Columns"] for run in info["RunConfounds"]] == [used] * len(info["RunConfounds"])
    assert "Confounds regressed out (--confounds auto): the 6 motion parameters" in (out / names.report()).read_text()
