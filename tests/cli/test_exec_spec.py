"""The BIDS-Apps execution specification (0.1.0): --bids-exec-spec, the flag form of the input, output and level
beside the positional form, derivatives from --input-dataset, label lists and label files."""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bids_recon.cli.boutiques import (
    BIDS_APP_SPEC_VERSION,
    SUGGESTED_PROFILE,
    SUGGESTED_RESOURCES,
    render_descriptor,
)
from bids_recon.cli.parser import build_parser
from bids_recon.cli.run import build_config, main
from bids_recon.errors import ExitCode
from tests.conftest import run_cli


def _dataset(root: Path, **description) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": root.name, "BIDSVersion": "1.10.0",
                                                               **description}))
    return root


def _derivatives(root: Path, pipeline: str) -> Path:
    return _dataset(root, DatasetType="derivative", GeneratedBy=[{"Name": pipeline, "Version": "25.0.0"}])


def _parse(*argv: str) -> dict:
    return vars(build_parser().parse_args([str(a) for a in argv]))


def _settings(parsed: dict) -> dict:
    return {k: v for k, v in parsed.items() if "." in k}


def _usage_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    assert exit_info.value.code == ExitCode.USAGE == 64
    return capsys.readouterr().err


def test_bids_exec_spec_prints_the_descriptor():
    proc = subprocess.run([sys.executable, "-m", "bids_recon", "--bids-exec-spec"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == render_descriptor() == (Path(__file__).parents[2] / "boutiques/bids_recon.json").read_text()
    descriptor = json.loads(proc.stdout)
    assert descriptor["custom"]["BIDSAppSpecVersion"] == BIDS_APP_SPEC_VERSION == "0.1.0"
    inputs = {i["id"]: i for i in descriptor["inputs"]}
    # the argument IDs the specification requires (and its reserved <Entity>Label), with our flags
    assert {k: inputs[k]["command-line-flag"] for k in ("InputDataset", "OutputLocation", "AnalysisLevel", "Help",
                                                        "ToolVersion", "SubjectLabel", "SessionLabel", "TaskLabel")} \
        == {"InputDataset": "--input-dataset", "OutputLocation": "--output-location",
            "AnalysisLevel": "--analysis-level", "Help": "--help", "ToolVersion": "--version",
            "SubjectLabel": "--participant-label", "SessionLabel": "--session-label", "TaskLabel": "--task-id"}
    assert [k for k, i in inputs.items() if not i["optional"]] == ["InputDataset", "OutputLocation", "AnalysisLevel"]
    assert inputs["InputDataset"]["list"] is True and "in this order" in inputs["InputDataset"]["description"]
    assert {"subject", "dataset", "participant", "group"} == set(inputs["AnalysisLevel"]["value-choices"])
    assert "--bids-exec-spec" not in descriptor["command-line"] and "BidsExecSpec" not in inputs
    measured = SUGGESTED_RESOURCES[SUGGESTED_PROFILE]
    in_gb = lambda gib: math.ceil(gib * 2**30 / 1e8) / 10  # noqa: E731 -- GiB measured, GB (10^9 bytes) rounded up
    assert descriptor["suggested-resources"] == {
        "cpu-cores": measured.cpu_cores, "ram": in_gb(measured.peak_rss_gib),
        "disk-space": in_gb(measured.work_gib + measured.output_gib), "walltime-estimate": measured.walltime_s}
    assert descriptor["suggested-resources"]["ram"] == 16.7  # 15.55 GiB
    assert descriptor["custom"]["SuggestedResources"][SUGGESTED_PROFILE]["gpus"] == measured.gpus


def test_both_forms_give_the_same_settings(tmp_path):
    raw = _dataset(tmp_path / "ds")
    positional = _settings(_parse(raw, tmp_path / "out", "participant", "--participant-label", "01"))
    flags = _settings(_parse("--input-dataset", raw, "--output-location", tmp_path / "out", "--analysis-level",
                             "participant", "--participant-label", "01"))
    assert positional == flags == {"execution.bids_dir": str(raw), "execution.output_dir": str(tmp_path / "out"),
                                   "execution.analysis_level": "participant", "execution.participant_label": ["01"]}
    # positional arguments may still come between options, as before; relative paths are made absolute
    between = _settings(_parse(raw, tmp_path / "out", "--nprocs", "2", "group"))
    assert between["execution.analysis_level"] == "group" and between["nipype.nprocs"] == 2
    # the specification's level names are ours
    assert _parse(raw, tmp_path / "out", "subject")["execution.analysis_level"] == "participant"
    assert _parse("--input-dataset", raw, "--output-location", tmp_path / "o", "--analysis-level", "dataset"
                  )["execution.analysis_level"] == "group"


def test_input_dataset_names_derivatives_by_their_pipeline(tmp_path):
    raw = _dataset(tmp_path / "ds")
    fmriprep = _derivatives(tmp_path / "prep", "fMRIPrep")
    other = _dataset(tmp_path / "legacy", PipelineDescription={"Name": "My-Pipe 2"})  # BIDS < 1.4 derivatives
    parsed = _parse("--input-dataset", raw, fmriprep, other, "--output-location", tmp_path / "out",
                    "--analysis-level", "participant", "-d", f"extra={tmp_path}")
    assert parsed["execution.bids_dir"] == str(raw)
    assert parsed["execution.derivatives"] == {"extra": str(tmp_path), "fmriprep": str(fmriprep),
                                               "mypipe2": str(other)}
    assert list(parsed["execution.derivatives"])[1:] == ["fmriprep", "mypipe2"]  # the order given is kept
    assert "input_dataset" not in parsed
    parser = build_parser()
    config = build_config(parser.parse_args(["--input-dataset", str(raw), str(fmriprep), "--output-location",
                                             str(tmp_path / "out"), "--analysis-level", "participant"]), parser)
    assert config.execution.derivatives == {"fmriprep": str(fmriprep)} and config.execution.bids_dir == str(raw)


def test_input_dataset_errors(tmp_path, capsys):
    raw = _dataset(tmp_path / "ds")
    fmriprep = _derivatives(tmp_path / "prep", "fMRIPrep")
    tail = ["--output-location", str(tmp_path / "out"), "--analysis-level", "participant"]
    err = _usage_error(capsys, "--input-dataset", raw, fmriprep, *tail, "-d", f"fmriprep={tmp_path}")
    assert "derivatives 'fmriprep' given twice" in err
    _usage_error(capsys, "--input-dataset", raw, fmriprep, _derivatives(tmp_path / "prep2", "fmriprep"), *tail)
    unnamed = _dataset(tmp_path / "unnamed", DatasetType="derivative")
    assert main(["--input-dataset", str(raw), str(unnamed), *tail]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert str(unnamed) in err and "GeneratedBy" in err and "-d NAME=PATH" in err
    assert main(["--input-dataset", str(raw), str(tmp_path / "nowhere"), *tail]) == ExitCode.MISSING_INPUT
    assert "nowhere" in capsys.readouterr().err
    assert main(["--input-dataset", str(fmriprep), str(raw), *tail]) == ExitCode.USAGE  # the order is wrong
    assert "the first dataset must be the raw BIDS dataset" in capsys.readouterr().err


@pytest.mark.parametrize("argv, what", [
    (["DS", "OUT", "participant", "--input-dataset", "DS"], "input dataset"),
    (["DS", "OUT", "participant", "--output-location", "OUT"], "output location"),
    (["DS", "OUT", "participant", "--analysis-level", "group"], "analysis level"),
    (["--analysis-level", "group", "DS", "OUT", "participant"], "analysis level"),
])
def test_both_forms_for_one_thing_is_64(tmp_path, capsys, argv, what):
    err = _usage_error(capsys, *[str(tmp_path / a) if a in ("DS", "OUT") else a for a in argv])
    assert f"the {what} is given twice, as " in err and "give it once" in err


@pytest.mark.parametrize("argv, missing", [
    ([], "the input dataset and the output location and the analysis level are missing"),
    (["--output-location", "OUT", "--analysis-level", "participant"], "the input dataset is missing"),
    (["DS", "OUT"], "the analysis level is missing"),
    (["--input-dataset", "DS", "--analysis-level", "group"], "the output location is missing"),
])
def test_neither_form_is_64(tmp_path, capsys, argv, missing):
    err = _usage_error(capsys, *[str(tmp_path / a) if a in ("DS", "OUT") else a for a in argv])
    assert missing in err and "--input-dataset PATH --output-location PATH --analysis-level LEVEL" in err


def test_labels_as_a_list_or_a_file(tmp_path, monkeypatch):
    raw = _dataset(tmp_path / "ds")
    (tmp_path / "subjects.txt").write_text("01\n\n# a comment\nsub-02 \n03\n")
    (tmp_path / "sessions").write_text("1-37\n")  # the specification's form: any existing file, named as typed
    monkeypatch.chdir(tmp_path)
    base = [raw, tmp_path / "out", "participant"]
    assert _parse(*base, "--participant-label", "01", "02")["execution.participant_label"] == ["01", "02"]
    assert _parse(*base, "--participant-label", "subjects.txt")["execution.participant_label"] == ["01", "sub-02",
                                                                                                    "03"]
    assert _parse(*base, "--participant-label", "04", tmp_path / "subjects.txt", "01"
                  )["execution.participant_label"] == ["04", "01", "sub-02", "03"]
    (tmp_path / "sub-05").mkdir()  # run from inside a dataset: a folder is not a label file
    assert _parse(*base, "--participant-label", "sub-05")["execution.participant_label"] == ["sub-05"]
    parsed = _parse(*base, "--session-label", "sessions", "-t", "subjects.txt")
    assert parsed["execution.session_label"] == ["1-37"] and parsed["execution.task_id"] == ["01", "sub-02", "03"]
    parser = build_parser()
    config = build_config(parser.parse_args([str(a) for a in base] + ["--participant-label", "subjects.txt"]), parser)
    assert config.execution.participant_label == ["01", "sub-02", "03"]  # the labels are saved, not the file


@pytest.mark.parametrize("content, value, message", [
    (None, "missing.txt", "'missing.txt' is neither a label nor a label file"),
    (None, "lists/subjects", "'lists/subjects' is neither a label nor a label file"),
    ("\n# nothing\n", "empty.txt", "lists no label"),
    ("01 02\n", "spaces.txt", "'01 02' is not a label"),
])
def test_bad_label_file_is_64(tmp_path, capsys, monkeypatch, content, value, message):
    if content is not None:
        (tmp_path / value).write_text(content)
    monkeypatch.chdir(tmp_path)
    err = _usage_error(capsys, tmp_path / "ds", tmp_path / "out", "participant", "--participant-label", value)
    assert "argument --participant-label" in err and message in err


def test_help_shows_both_forms(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--bids-exec-spec", "--input-dataset PATH [PATH ...]", "--output-location PATH",
                   "--analysis-level {participant,group,subject,dataset}", "BIDS-Apps 1.0 form of --input-dataset",
                   "--participant-label LABEL|FILE [LABEL|FILE ...]", "a file listing one label per line"):
        assert phrase in text, phrase


def test_boutiques_invocation_of_the_specification(tmp_path):
    """The specification's example invocation (raw + derivatives, SubjectLabel) becomes our settings via bosh."""
    pytest.importorskip("boutiques")
    from boutiques import bosh

    raw = _dataset(tmp_path / "ds")
    fmriprep = _derivatives(tmp_path / "ds" / "derivatives" / "fmriprep", "fMRIPrep")
    descriptor = tmp_path / "bids_recon.json"
    descriptor.write_text(render_descriptor())
    invocation = tmp_path / "input_params.json"
    invocation.write_text(json.dumps({"InputDataset": [str(raw), str(fmriprep)], "OutputLocation": str(tmp_path / "o"),
                                      "AnalysisLevel": "subject", "SubjectLabel": ["01", "02"]}))
    command = bosh(["exec", "simulate", str(descriptor), "-i", str(invocation)]).shell_command
    parsed = _settings(_parse(*shlex.split(command)[1:]))
    assert parsed == {"execution.bids_dir": str(raw), "execution.output_dir": str(tmp_path / "o"),
                      "execution.analysis_level": "participant", "execution.participant_label": ["01", "02"],
                      "execution.derivatives": {"fmriprep": str(fmriprep)}}


@pytest.mark.slow
def test_flag_form_and_label_file_run(tiny_dataset, tmp_path):
    """The execution specification's form end to end (--check-only): derivatives from --input-dataset, a label
    file, the level 'subject'; a label file that selects nobody is 18."""
    bids = tiny_dataset.bids_dir
    (tmp_path / "subjects.txt").write_text("01\n")
    (tmp_path / "nobody.txt").write_text("99\n")

    def run(labels: Path, out: str):
        return run_cli(["--input-dataset", str(bids), str(bids / "derivatives" / "fmriprep"), "--output-location",
                        str(tmp_path / out), "--analysis-level", "subject", "--participant-label", str(labels),
                        "-w", str(tmp_path / "work"), "--skip-bids-validation", "--check-only"],
                       tiny_dataset.templateflow_dir)

    good = run(tmp_path / "subjects.txt", "good")
    assert good.returncode == 0, good.stderr[-3000:]
    assert "Participants: 01 (" in good.stderr
    saved = tomllib.loads(next((tmp_path / "good" / "logs").glob("*/bids_recon.toml")).read_text())["execution"]
    assert saved["derivatives"] == {"fmriprep": str(bids / "derivatives" / "fmriprep")}
    assert saved["participant_label"] == ["01"] and saved["analysis_level"] == "participant"
    assert run(tmp_path / "nobody.txt", "none").returncode == ExitCode.EMPTY_SELECTION
