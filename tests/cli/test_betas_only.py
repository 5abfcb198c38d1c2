"""``--betas-only``: which events rows are trials without a stimulus column, what the workflow holds, what the group
level says. The CLI runs on datasets without sessions and on block designs are in tests/sim/test_shapes.py."""

from __future__ import annotations

import pandas as pd
import pytest

from bids_recon.design import CONDITION_COLUMN, betas_only_column, number_repeats, run_trials
from bids_recon.errors import BadDataError, EmptySelectionError
from bids_recon.features.params import StimulusParams


def test_trials_are_trial_type_rows_only_where_events_name_no_stimulus(tmp_path):
    files = StimulusParams()
    assert betas_only_column(["onset", "duration", "stim_file", "trial_type"], files) is None
    assert betas_only_column(["onset", "duration", "trial_type"], files) == CONDITION_COLUMN
    assert betas_only_column(["onset", "duration"], StimulusParams(column="condition")) is None  # the user's
    with pytest.raises(BadDataError, match=r"have: onset, duration, response.*--stimulus-column"):
        betas_only_column(["onset", "duration", "response"], files, tmp_path / "x_events.tsv")
    # a block design (Haxby et al. 2001): each condition's rows are its repeats, rows without a condition dropped
    events = pd.DataFrame({"onset": [0.0, 2.0, 4.0, 30.0, 32.0, 60.0], "duration": 0.5,
                           "trial_type": ["face", "face", "face", "house", "house", None]})
    table = number_repeats(run_trials(events, "1", None, "01", StimulusParams(column=CONDITION_COLUMN)))
    assert list(table["stim_id"]) == ["face"] * 3 + ["house"] * 2
    assert list(table["repeat"]) == [0, 1, 2, 0, 1]
    assert set(table["split"]) == {"n/a"} and set(table["session"]) == {"n/a"}


def test_a_betas_only_workflow_holds_the_beta_stage_and_the_report_only(tiny_dataset, tmp_path):
    from bids_recon.bids.layout import collect_inputs
    from bids_recon.config import Config
    from bids_recon.workflows.base import init_bids_recon_wf

    config = Config()
    config.execution.bids_dir, config.execution.output_dir = str(tiny_dataset.bids_dir), str(tmp_path / "out")
    config.execution.work_dir, config.execution.run_id = str(tmp_path / "work"), "test"
    config.execution.derivatives = {"fmriprep": str(tiny_dataset.fmriprep_dir)}
    config.workflow.betas_only = True
    inputs = collect_inputs(tiny_dataset.bids_dir, tiny_dataset.fmriprep_dir, ["01"])
    names = init_bids_recon_wf(config, inputs).list_node_names()
    assert any(n.endswith("combine_runs") for n in names) and any(n.endswith(".report") for n in names)
    assert not [n for n in names if any(w in n for w in ("rois_wf", "decode", "linear_wf", "encoding", "evaluate"))]


def test_the_group_level_says_a_betas_only_output_has_nothing_to_compare(tmp_path):
    from bids_recon.group import collect_group_metrics
    from bids_recon.io import write_tsv

    func = tmp_path / "sub-01" / "func"
    write_tsv(func / "sub-01_task-x_desc-singletrial_trials.tsv", pd.DataFrame({"stim_id": ["a"]}))
    with pytest.raises(EmptySelectionError, match="ran with --betas-only"):
        collect_group_metrics(tmp_path)


def test_betas_only_takes_the_one_space_there_is_unless_one_was_chosen(tmp_path):
    """No atlas is needed: without --space, derivatives in one other space than the default are used as they are."""
    from bids_recon.cli.run import _betas_only_space
    from tests.conftest import cli_config

    func = tmp_path / "fmriprep" / "sub-01" / "func"
    func.mkdir(parents=True)
    for run in ("01", "02"):
        (func / f"sub-01_task-x_run-{run}_space-T1w_desc-preproc_bold.nii.gz").touch()

    def config(*flags):
        made = cli_config(tmp_path, "--betas-only", "-d", f"fmriprep={tmp_path / 'fmriprep'}", *flags)
        _betas_only_space(made)
        return made.workflow

    assert (config().space, config().resolution) == ("T1w", None)
    assert config("--space", "MNI152NLin2009cAsym").space == "MNI152NLin2009cAsym"  # chosen: kept (and refused later)
    (func / "sub-01_task-x_run-01_space-MNI152NLin6Asym_res-2_desc-preproc_bold.nii.gz").touch()
    assert config().space == "MNI152NLin2009cAsym"  # two to choose from: the user must say which
