"""Common base of bids_recon's nipype interfaces."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from nipype.interfaces.base import SimpleInterface, traits
from threadpoolctl import threadpool_limits

from bids_recon.errors import BidsReconError, InvariantError, record_error

#: Modules whose RuntimeWarnings inside a node are errors (exit 70): numpy's "Mean of empty slice" or "invalid value
#: encountered" mean a number was computed from nothing or became NaN. Other libraries' warnings are logged.
STRICT_WARNING_MODULES = r"(bids_recon|numpy|pandas|scipy)(\.|$)"


def node_name(cwd: str | Path) -> str:
    """A node's dotted name from its working directory (``.../bids_recon_wf/sub_01_wf/betas_wf/combine_runs`` ->
    ``bids_recon_wf.sub_01_wf.betas_wf.combine_runs``)."""
    parts = Path(cwd).parts
    top = next((i for i, part in enumerate(parts) if part == "bids_recon_wf"), len(parts) - 1)
    return ".".join(parts[top:])


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
        node = node_name(runtime.cwd)
        with threadpool_limits(limits=threads), warnings.catch_warnings():
            warnings.filterwarnings("error", category=RuntimeWarning, module=STRICT_WARNING_MODULES)
            try:
                self._run(runtime)
            except InvariantError as exc:
                located = InvariantError(f"node {node}: {exc}")
                record_error(located, node)
                raise located from exc
            except BidsReconError as exc:
                record_error(exc, node)
                raise
            except RuntimeWarning as exc:  # a number computed from nothing, or NaN created: never kept
                located = InvariantError(f"node {node}: numerical warning turned error ({exc}): a NaN or an empty "
                                         "average was about to cross into the outputs; this is a bug, please report "
                                         "it with the log")
                record_error(located, node)
                raise located from exc
        return runtime


def params_trait(cls: type) -> traits.Dict:
    """An input holding a whole parameter dataclass as a dict (see :func:`bids_recon.params.to_dict`)."""
    return traits.Dict(mandatory=True, desc=f"{cls.__module__}.{cls.__name__} fields")


def load_params(cls: type, value: dict, prefix: str = "") -> object:
    """The parameter dataclass ``cls`` from a node's dict input, validated again (a node may be run by hand)."""
    from bids_recon.params import build

    return build(cls, dict(value), prefix or cls.__name__, {})
