"""Common base of bids_recon's nipype interfaces."""

from __future__ import annotations

import os

from nipype.interfaces.base import SimpleInterface, traits
from threadpoolctl import threadpool_limits

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
        # BLAS/OpenMP pools are sized when numpy is first imported, before the command line could set
        # OMP_NUM_THREADS: apply --omp-nthreads here (on small machines OpenBLAS SVDs are 10-30x slower
        # with 2 threads than with 1)
        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None
        with threadpool_limits(limits=threads):
            try:
                self._run(runtime)
            except BidsReconError as exc:
                record_error(exc, type(self).__name__)
                raise
        return runtime


def params_trait(cls: type) -> traits.Dict:
    """An input holding a whole parameter dataclass as a dict (see :func:`bids_recon.params.to_dict`)."""
    return traits.Dict(mandatory=True, desc=f"{cls.__module__}.{cls.__name__} fields")


def load_params(cls: type, value: dict, prefix: str = "") -> object:
    """The parameter dataclass ``cls`` from a node's dict input, validated again (a node may be run by hand)."""
    from bids_recon.params import build

    return build(cls, dict(value), prefix or cls.__name__, {})
