"""Error types and the BIDS-App exit codes: the one place that maps a failure to a code.

Exit codes follow the BIDS-Apps draft specification:

======  =====================================================================
code    meaning
======  =====================================================================
0       success
1       unexpected failure (a bug, a crashed workflow node)
16      the input dataset is not valid BIDS
17      unknown analysis level
18      the participant/session/task filters selected nothing
64      usage error (bad command-line arguments)
65      bad data (files exist but their content is wrong)
66      missing input (a file, template or model that must exist does not)
69      service unavailable (``bids_recon-fetch`` cannot reach the network)
70      internal error: an array or table that crosses a stage broke an invariant (a bug; see
        :mod:`bids_recon.invariants`)
======  =====================================================================
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """BIDS-App exit codes."""

    SUCCESS = 0
    FAILURE = 1
    INVALID_BIDS = 16
    UNKNOWN_LEVEL = 17
    EMPTY_SELECTION = 18
    USAGE = 64
    BAD_DATA = 65
    MISSING_INPUT = 66
    UNAVAILABLE = 69
    INTERNAL = 70


class BidsReconError(Exception):
    """Base class of the errors bids_recon reports to users (never a traceback)."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, path: object | None = None) -> None:
        self.path = None if path is None else str(path)
        full = f"{self.path}: {message}" if self.path else message
        super().__init__(full)


class UsageError(BidsReconError):
    """Bad command-line arguments or configuration."""

    exit_code = ExitCode.USAGE


class InvalidBidsError(BidsReconError):
    """The input is not a valid BIDS dataset."""

    exit_code = ExitCode.INVALID_BIDS


class UnknownAnalysisLevelError(BidsReconError):
    """An analysis level other than ``participant`` or ``group``."""

    exit_code = ExitCode.UNKNOWN_LEVEL


class EmptySelectionError(BidsReconError):
    """Participant, session, task or BIDS filters selected no data."""

    exit_code = ExitCode.EMPTY_SELECTION


class BadDataError(BidsReconError):
    """A file exists but its content cannot be used (wrong shape, NaNs, mismatched grids...)."""

    exit_code = ExitCode.BAD_DATA


class MissingInputError(BidsReconError):
    """A required file, template or model does not exist."""

    exit_code = ExitCode.MISSING_INPUT


class ServiceUnavailableError(BidsReconError):
    """A network service that a command needs cannot be reached (no network, offline node)."""

    exit_code = ExitCode.UNAVAILABLE


class InvariantError(BidsReconError):
    """An array or table crossing a stage broke an invariant (not finite, wrong shape, not standardised...).

    Raised by :mod:`bids_recon.invariants`; the message names the node, the file and the invariant. This is a bug
    or data the stage before should have refused: never a number to keep.
    """

    exit_code = ExitCode.INTERNAL


def exit_code_for(exc: BaseException) -> ExitCode:
    """Return the exit code for an exception raised during a run.

    Parameters
    ----------
    exc : BaseException
        The exception that stopped the run.

    Returns
    -------
    ExitCode
        The code of a :class:`BidsReconError`; ``FAILURE`` for anything else.
    """
    if isinstance(exc, BidsReconError):
        return exc.exit_code
    return ExitCode.FAILURE


#: Environment variable naming the folder where workflow nodes record user-facing errors, so that the
#: command line can report them with the right exit code after nipype has wrapped them in a crash.
ERROR_DIR_ENV = "BIDS_RECON_ERROR_DIR"


def record_error(exc: BidsReconError, where: str) -> None:
    """Record a :class:`BidsReconError` raised inside a workflow node (no-op when not in a run)."""
    import json
    import os
    import uuid
    from pathlib import Path

    folder = os.environ.get(ERROR_DIR_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    record = {"code": int(exc.exit_code), "type": type(exc).__name__, "message": str(exc), "where": where}
    (Path(folder) / f"{where}-{uuid.uuid4().hex[:8]}.json").write_text(json.dumps(record))


def read_errors(folder: str) -> list[dict[str, object]]:
    """Errors recorded by :func:`record_error` in ``folder``, oldest first."""
    import json
    from pathlib import Path

    files = sorted(Path(folder).glob("*.json"), key=lambda p: p.stat().st_mtime) if Path(folder).is_dir() else []
    return [json.loads(p.read_text()) for p in files]
