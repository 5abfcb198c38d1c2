"""Reading a run's BIDS events: the table every trial table is made from (:func:`bids_recon.design.trials.run_trials`).

BIDS: ``onset`` is a number on every row; ``duration`` may be ``n/a`` ("unavailable"), which is refused only on the
row of a trial (a trial's regressor needs its duration), never on rows that are not trials.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.io import read_tsv

#: Key of the events' ``attrs`` that holds each sorted row's line in the file (the header is line 1).
LINES_ATTR = "lines"


def load_events(path: Path, n_volumes: int | None = None, repetition_time: float | None = None) -> pd.DataFrame:
    """Read and check a BIDS events file.

    Parameters
    ----------
    path : Path
        ``*_events.tsv`` with at least ``onset`` and ``duration`` (seconds).
    n_volumes, repetition_time : optional
        When both are given, trials must start inside the run.

    Returns
    -------
    pandas.DataFrame
        The events sorted by onset, index reset; ``attrs[LINES_ATTR]`` holds each row's line in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("events file does not exist", path)
    try:
        events = read_tsv(path)
    except Exception as exc:  # pandas raises several parser errors
        raise BadDataError(f"cannot read events table ({exc})", path) from exc
    for column in ("onset", "duration"):
        if column not in events:
            raise BadDataError(f"events table lacks the '{column}' column (has: {', '.join(events.columns)})", path)
        values = pd.to_numeric(events[column], errors="coerce")
        # BIDS: onset is a number on every row; duration may be n/a ("unavailable"), refused only on a trial's row
        # (bids_recon.design.trials.run_trials)
        bad = values.isna() & (events[column].notna() if column == "duration" else True)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise BadDataError(f"non-numeric or missing '{column}' on line {row}", path)
        events[column] = values.astype(float)
    if (events["duration"] < 0).any():
        raise BadDataError("negative duration", path)
    if n_volumes is not None and repetition_time is not None:
        run_end = n_volumes * repetition_time
        late = events["onset"] + events["duration"] > run_end + 1e-6
        if late.any():
            onset = float(events.loc[late, "onset"].iloc[0])
            raise BadDataError(f"a trial at onset {onset} s ends after the run ends ({run_end:g} s)", path)
    order = np.argsort(events["onset"].to_numpy(float), kind="stable")
    events = events.iloc[order].reset_index(drop=True)
    # the file line of each sorted row (header on line 1), for errors raised after sorting; a tuple, as pandas
    # compares attrs when it concatenates frames
    events.attrs[LINES_ATTR] = tuple(int(line) for line in order + 2)
    return events


__all__ = ["LINES_ATTR", "load_events"]
