"""The command line: help, version, usage errors and exit codes (no workflow is run here)."""

import json
import subprocess
import sys

import pytest

from bids_recon import __version__
from bids_recon.cli.run import main
from bids_recon.errors import ExitCode


def _raw_dataset(root):
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.10.0"}))
    return root


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--participant-label", "--session-label", "--task-id", "--bids-filter-file", "--derivatives",
                 "--work-dir", "--nprocs", "--omp-nthreads", "--mem", "--use-plugin", "--device", "--random-seed",
                 "--config-file", "--skip-bids-validation", "--stop-on-first-crash", "--reports-only", "--verbose",
                 "--version", "--roi-mask", "Exit codes"):
        assert flag in text, flag


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_usage_error_is_64(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), str(tmp_path / "out"), "participant", "--nprocs", "two"])
    assert exit_info.value.code == ExitCode.USAGE
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == ExitCode.USAGE


def test_unknown_level_is_17(tmp_path, capsys):
    bids = _raw_dataset(tmp_path / "ds")
    # 'session' is a level of the execution specification that bids_recon does not have ('subject' is 'participant')
    assert main([str(bids), str(tmp_path / "out"), "session"]) == ExitCode.UNKNOWN_LEVEL == 17
    assert "unknown analysis level 'session'" in capsys.readouterr().err


@pytest.mark.parametrize("inside", ["", "derivatives/bids_recon"])
def test_output_inside_bids_dir_is_64(tmp_path, capsys, inside):
    bids = _raw_dataset(tmp_path / "ds")
    out = bids / inside if inside else bids
    assert main([str(bids), str(out), "participant", "-d", f"fmriprep={tmp_path}"]) == ExitCode.USAGE
    assert "must not be bids_dir or inside it" in capsys.readouterr().err


def test_missing_bids_dir_is_66(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), str(tmp_path / "out"), "participant"]) == ExitCode.MISSING_INPUT
    assert "nope" in capsys.readouterr().err


def test_missing_fmriprep_is_66(tmp_path, capsys):
    bids = _raw_dataset(tmp_path / "ds")
    assert main([str(bids), str(tmp_path / "out"), "participant"]) == ExitCode.MISSING_INPUT
    assert "-d fmriprep=PATH" in capsys.readouterr().err


def test_bad_derivatives_syntax_is_64(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), str(tmp_path / "out"), "participant", "-d", "fmriprep"])
    assert exit_info.value.code == ExitCode.USAGE


def test_unknown_decoder_roi_is_64(tmp_path, capsys):
    bids = _raw_dataset(tmp_path / "ds")
    code = main([str(bids), str(tmp_path / "out"), "participant", "-d", f"fmriprep={tmp_path}",
                 "--decoder-roi", "v9"])
    assert code == ExitCode.USAGE
    assert "v9" in capsys.readouterr().err


def test_group_without_participants_is_18(tmp_path, capsys):
    bids = _raw_dataset(tmp_path / "ds")
    (tmp_path / "out").mkdir()
    assert main([str(bids), str(tmp_path / "out"), "group"]) == ExitCode.EMPTY_SELECTION


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "bids_recon", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout
