"""Input checks at function level: each bad input is refused by the preflight (collect_inputs + the checks) with
its exit code and a message naming the file and the problem, in-process and in about a second.

The same cases run through the command line in a subprocess in tests/test_reliability.py (marked slow).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bids_recon.bids.layout import collect_inputs
from bids_recon.cli.parser import build_parser
from bids_recon.cli.run import build_config, check_collected_inputs
from bids_recon.errors import BidsReconError
from tests.bad_inputs import CASES, EXTRA_ARGS, FMRIPREP, FOUND_IN_A_NODE


def _preflight(bids: Path, templateflow: Path, monkeypatch, *flags: str) -> None:
    """What the command line runs before building the workflow (one participant)."""
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(templateflow))
    parser = build_parser()
    config = build_config(parser.parse_args([str(bids), str(bids.parent / "out"), "participant", "-d",
                                             f"fmriprep={bids / FMRIPREP}", "--participant-label", "01", *flags]),
                          parser)
    ex, wf = config.execution, config.workflow
    inputs = collect_inputs(bids, bids / FMRIPREP, ex.participant_label, ex.session_label, ex.task_id,
                            ex.bids_filters, wf.space, wf.resolution)
    check_collected_inputs(config, inputs)


@pytest.fixture
def dataset_copy(tiny_dataset, tmp_path: Path) -> Path:
    bids = tmp_path / "ds"
    shutil.copytree(tiny_dataset.bids_dir, bids)
    return bids


def test_good_inputs_pass(tiny_dataset, tmp_path, monkeypatch):
    _preflight(tiny_dataset.bids_dir, tiny_dataset.templateflow_dir, monkeypatch)


@pytest.mark.parametrize("case", [c for c in CASES if c not in FOUND_IN_A_NODE])
def test_bad_input_is_refused_before_any_work(case, dataset_copy, tiny_dataset, monkeypatch):
    mutate, code = CASES[case]
    named, words = mutate(dataset_copy)
    with pytest.raises(BidsReconError) as caught:
        _preflight(dataset_copy, tiny_dataset.templateflow_dir, monkeypatch, *EXTRA_ARGS.get(case, []))
    message = str(caught.value)
    assert int(caught.value.exit_code) == code, message
    if case != "too-few-repeats":
        assert named.name in message, message
    for word in words:
        assert word in message, message
