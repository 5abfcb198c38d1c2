"""The whole pipeline, end to end, on the tiny simulated dataset (as a user runs it: a subprocess)."""

from __future__ import annotations

import json
import tomllib

import nibabel as nib
import numpy as np
import pytest

from bids_recon.design import read_trials
from bids_recon.io import read_tsv
from bids_recon.naming import SubjectOutputs, group_metrics_path, group_report_path
from tests.conftest import run_cli, validator_errors

pytestmark = pytest.mark.slow  # the whole pipeline, run by the command line in a subprocess


def _names(run, subject="01"):
    return SubjectOutputs(subject, run["dataset"].task, "MNI152NLin2009cAsym", "2")


def test_participant_level_succeeds(tiny_run):
    proc = tiny_run["participant"]
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_outputs_exist_with_sidecars(tiny_run):
    out, dataset = tiny_run["out"], tiny_run["dataset"]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bids_recon"
    for subject in dataset.subjects:
        names = _names(tiny_run, subject)
        trials = read_trials(out / names.trials())
        for (session, run), rows in trials.groupby(["session", "run"]):
            statmap = out / names.betas(session, run)
            assert nib.load(statmap).shape[3] == len(rows)
            sidecar = json.loads((out / names.betas(session, run, ".json")).read_text())
            assert any(s.startswith("bids:fmriprep:") for s in sidecar["Sources"])
            assert len(read_tsv(out / names.betas(session, run, ".tsv"))) == len(rows)
        for roi in ("earlyvisual", "highervisual"):
            roi_json = json.loads((out / names.roi_mask(roi, "HOCPA", ".json")).read_text())
            assert roi_json["Voxels"] == int(np.asarray(nib.load(out / names.roi_mask(roi, "HOCPA")).dataobj).sum())
        assert (out / names.decoder("earlyvisual", "imagepca")).is_file()
        assert "MedianCVScore" in json.loads((out / names.decoder("earlyvisual", "imagepca", ".json")).read_text())
        index = read_tsv(out / names.recon_index("linear"))
        assert set(index.columns) >= {"stimulus", "trials", "file", "pixcorr", "ssim"}
        assert (index["trials"] >= 2).all()
        assert all((out / f).is_file() for f in index["file"])
        assert (out / names.report()).is_file()


def test_reconstructions_identify_the_stimuli(tiny_run):
    """On the tiny preset (8 test images), decoded images are identified far above chance (50%).

    8 test images make 28 pairs, whose 2-way identification moves in steps of 1/28 and by about +-0.1 from one
    GLM or solver change to the next (pixels 0.70-0.86 per subject so far): each subject must be above chance by
    a margin, the two together clearly so. The >= 90% criterion is for the small preset (30 test images): see
    docs/benchmarks.md.
    """
    out = tiny_run["out"]
    pixels = []
    for subject in tiny_run["dataset"].subjects:
        metrics = read_tsv(out / _names(tiny_run, subject).metrics("linear")).set_index("metric")
        pixels.append(metrics.loc["identification_pixels", "value"])
        assert pixels[-1] >= 0.64, metrics  # chance 0.5: 4 pairs above it out of 28
        assert metrics.loc["identification_features", "value"] > 0.75, metrics
    assert np.mean(pixels) >= 0.7, pixels


def test_config_and_log_saved(tiny_run):
    logs = sorted((tiny_run["out"] / "logs").iterdir())
    assert logs
    config = tomllib.loads((logs[0] / "bids_recon.toml").read_text())
    assert config["execution"]["analysis_level"] == "participant"
    assert "Finished" in (logs[0] / "bids_recon.log").read_text()


def test_report_links_resolve(tiny_run):
    out = tiny_run["out"]
    html = (out / "sub-01.html").read_text()
    for section in ("Single-trial betas", "Regions of interest", "Decoders", "Reconstructions", "Metrics", "Methods"):
        assert section in html
    import re

    sources = re.findall(r'src="([^"]+)"', html)
    assert sources and all((out / s).is_file() for s in sources)


def test_group_level(tiny_run):
    proc = tiny_run["group"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tiny_run["out"]
    table = read_tsv(out / group_metrics_path(tiny_run["dataset"].task))
    assert set(table["participant_id"]) == {f"sub-{s}" for s in tiny_run["dataset"].subjects}
    assert (out / group_report_path()).is_file()


def test_output_passes_bids_validator(tiny_run):
    code, errors = validator_errors(tiny_run["out"])
    assert code == 0 and not errors, errors[:5]


@pytest.mark.changes_shared_run
def test_rerun_resumes_from_work_dir(tiny_run):
    """Same work dir: computing nodes are cached; outputs deleted since are written again, identical."""
    import shutil

    dataset, out = tiny_run["dataset"], tiny_run["out"]
    names = _names(tiny_run)
    before = (out / names.metrics("linear")).read_bytes()
    betas_before = (out / names.trials()).read_bytes()
    shutil.rmtree(out / "sub-01")
    proc = run_cli([str(dataset.bids_dir), str(out), "participant", "-d", f"fmriprep={dataset.fmriprep_dir}",
                    "-w", str(tiny_run["work"]), "--participant-label", "01", "--skip-bids-validation"],
                   dataset.templateflow_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / names.metrics("linear")).read_bytes() == before
    assert (out / names.trials()).read_bytes() == betas_before
    assert (out / "sub-01.html").is_file()


@pytest.mark.changes_shared_run
def test_reports_only_rebuilds_the_report(tiny_run):
    dataset, out = tiny_run["dataset"], tiny_run["out"]
    (out / "sub-01.html").unlink()
    proc = run_cli([str(dataset.bids_dir), str(out), "participant", "-d", f"fmriprep={dataset.fmriprep_dir}",
                    "--participant-label", "01", "--reports-only"], dataset.templateflow_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "sub-01.html").is_file()


def test_unknown_participant_is_18(tiny_dataset, tmp_path):
    proc = run_cli([str(tiny_dataset.bids_dir), str(tmp_path / "out"), "participant", "-d",
                    f"fmriprep={tiny_dataset.fmriprep_dir}", "--participant-label", "99", "--skip-bids-validation"],
                   tiny_dataset.templateflow_dir)
    assert proc.returncode == 18, proc.stderr
    assert "99" in proc.stderr


def test_missing_templates_is_66(tiny_dataset, tmp_path):
    empty = tmp_path / "tf"
    empty.mkdir()
    (empty / "placeholder").write_text("")  # non-empty folder: TemplateFlow will not fill a skeleton
    proc = run_cli([str(tiny_dataset.bids_dir), str(tmp_path / "out"), "participant", "-d",
                    f"fmriprep={tiny_dataset.fmriprep_dir}", "--participant-label", "01", "--skip-bids-validation",
                    "-w", str(tmp_path / "work")], empty)
    assert proc.returncode == 66, proc.stderr[-3000:]
    assert "TEMPLATEFLOW_HOME" in proc.stderr
    assert not list((tmp_path / "work").rglob("result_*.pklz"))  # found before any workflow node ran


def test_beta_stage_maps_in_outputs_and_report(tiny_run):
    out = tiny_run["out"]
    names = _names(tiny_run)
    trials = read_trials(out / names.trials())
    for session in trials["session"].unique():
        for stat in ("hrfindex", "rsquare", "fraction", "onoffrsquare"):
            path = out / names.stat_map(session, stat)
            assert nib.load(path).shape == nib.load(out / names.brain_mask()).shape
        info = json.loads((out / names.stat_map(session, "rsquare", ".json")).read_text())
        assert info["Estimator"] == "fithrf-denoise-rr" and "NoiseComponents" in info
    ncsnr = np.asarray(nib.load(out / names.stat_map(None, "ncsnr")).dataobj)
    assert np.nanmax(ncsnr) > 0.3
    html = (out / "sub-01.html").read_text()
    assert "Estimation per session" in html and "noise ceiling" in html.lower()
