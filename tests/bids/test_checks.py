"""Input checks at function level: each bad input is refused by the preflight (collect_inputs + the checks) with
its exit code and a message naming the file and the problem, in-process and in about a second.

The same cases run through the command line in a subprocess in tests/cli/test_reliability.py (marked slow).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bids_recon.bids.layout import collect_inputs
from bids_recon.cli.parser import build_parser
from bids_recon.cli.run import build_config, check_collected_inputs
from bids_recon.errors import BidsReconError
from tests.bad_inputs import (
    CASES,
    EXTRA_ARGS,
    FMRIPREP,
    FOUND_IN_A_NODE,
    IMPORT_CASES,
    LAYOUT_CASES,
    _import_flags,
    import_root,
)
from tests.conftest import layout_copy


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


@pytest.mark.parametrize("case", list(LAYOUT_CASES))
def test_bad_input_of_a_dataset_layout_is_refused_before_any_work(case, layout_dataset, tmp_path, monkeypatch):
    """Each public dataset's failure modes (ids beyond the HDF5, images missing or unreadable, COCO ids without a
    caption, the preset's column absent, a rule that selects nothing, RepetitionTime disagreements) stop the
    preflight with the exit code and a message naming the file, row and value."""
    from bids_recon.sim.layouts import get_layout

    layout, mutate, code, extra = LAYOUT_CASES[case]
    dataset = layout_dataset(layout)
    bids, stores = layout_copy(dataset, tmp_path / "ds")
    named, words = mutate(bids, stores)
    with pytest.raises(BidsReconError) as caught:
        _preflight(bids, dataset.templateflow_dir, monkeypatch, *get_layout(layout).run_args(bids, stores), *extra,
                   "--participant-label", dataset.subjects[0])
    message = str(caught.value)
    assert int(caught.value.exit_code) == code, message
    assert named.name in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("layout", ["nsd", "things", "bold5000", "god", "nod"])
def test_good_inputs_of_every_dataset_layout_pass(layout, layout_dataset, monkeypatch):
    dataset = layout_dataset(layout)
    _preflight(dataset.bids_dir, dataset.templateflow_dir, monkeypatch, *dataset.run_args, "--participant-label",
               dataset.subjects[0])


def _import_preflight(root: Path, templateflow: Path, monkeypatch, *flags: str) -> None:
    """What the command line runs before building the workflow of an import (--betas, one participant)."""
    from bids_recon.cli.run import _collect_imported

    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(templateflow))
    parser = build_parser()
    config = build_config(parser.parse_args([str(root), str(root.parent / "out"), "participant", *flags]), parser)
    check_collected_inputs(config, _collect_imported(config))


@pytest.mark.parametrize("layout", ["nsd", "things", "bold5000", "bids"])
def test_imported_betas_of_every_layout_pass(layout, layout_dataset, tmp_path, monkeypatch):
    dataset = layout_dataset(layout)
    bids, stores = layout_copy(dataset, tmp_path / "ds")
    _import_preflight(import_root(layout, bids, stores), dataset.templateflow_dir, monkeypatch,
                      *_import_flags(layout, bids, stores))


@pytest.mark.parametrize("case", list(IMPORT_CASES))
def test_bad_imported_betas_are_refused_before_any_work(case, layout_dataset, tmp_path, monkeypatch):
    """Trials in the design that the betas lack (or the reverse), a session missing from the series, an ROI in
    another space than the betas, integer betas where floats are stored: exit 65 naming both files."""
    layout, mutate = IMPORT_CASES[case]
    dataset = layout_dataset(layout)
    bids, stores = layout_copy(dataset, tmp_path / "ds")
    named, other, words = mutate(bids, stores)
    with pytest.raises(BidsReconError) as caught:
        _import_preflight(import_root(layout, bids, stores), dataset.templateflow_dir, monkeypatch,
                          *_import_flags(layout, bids, stores))
    message = str(caught.value)
    assert int(caught.value.exit_code) == 65, message
    assert named.name in message and other in message, message
    for word in words:
        assert word in message, message
