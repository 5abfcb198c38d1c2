"""Common base of bids_recon's nipype interfaces."""

from __future__ import annotations

from nipype.interfaces.base import SimpleInterface

from bids_recon.errors import BidsReconError, record_error


class RecordingInterface(SimpleInterface):
    """A SimpleInterface whose user-facing errors are recorded for the command line's exit code.

    Subclasses implement :meth:`_run` (fill ``self._results``) instead of ``_run_interface``.
    Interfaces that write into the output dataset set ``writes_outputs = True``: the workflow reruns
    them every time (they are cheap), so that outputs deleted since the last run are written again even
    when the work directory still caches the node.
    """

    writes_outputs = False

    def _run(self, runtime):  # pragma: no cover - abstract
        raise NotImplementedError

    def _run_interface(self, runtime):
        try:
            self._run(runtime)
        except BidsReconError as exc:
            record_error(exc, type(self).__name__)
            raise
        return runtime
