"""The experiment's design: events -> trial table -> repeats -> split -> rows to decode, and the confounds.

:mod:`~bids_recon.design.events` reads a run's events; :mod:`~bids_recon.design.trials` makes its trial table (the
stimulus settings say which rows are trials: :class:`~bids_recon.design.table.TrialRows`); :mod:`~.repeats` numbers
repeats and forms the train/test split by the rules of :mod:`~.split`; :mod:`~.table` holds the table's columns and
the rows to decode, :mod:`~.confounds` the fMRIPrep confounds a GLM regresses out. Used by the GLM, the importers
of published betas, the input checks and the simulator.
"""

from bids_recon.design.confounds import ConfoundChoice, choose_confounds, load_confounds, resolve_confounds
from bids_recon.design.events import load_events
from bids_recon.design.repeats import TEST_MIN_REPEATS, assign_repeats_and_split, number_repeats, run_tables
from bids_recon.design.split import (
    apply_test_split,
    describe_split,
    mark_imported_split,
    mark_test_split,
    parse_test_split,
)
from bids_recon.design.table import (
    NO_LABEL,
    NOT_DECODED,
    NOT_SPLIT,
    TRIAL_COLUMNS,
    TrialRows,
    decoded_trials,
    read_trials,
)
from bids_recon.design.trials import CONDITION_COLUMN, betas_only_column, run_trials

__all__ = [
    "CONDITION_COLUMN", "NOT_DECODED", "NOT_SPLIT", "NO_LABEL", "TEST_MIN_REPEATS", "TRIAL_COLUMNS",
    "ConfoundChoice", "TrialRows", "apply_test_split", "assign_repeats_and_split",
    "betas_only_column", "choose_confounds", "decoded_trials", "describe_split", "load_confounds", "load_events",
    "mark_imported_split", "mark_test_split", "number_repeats", "parse_test_split", "read_trials",
    "resolve_confounds", "run_tables", "run_trials",
]
