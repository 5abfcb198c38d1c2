"""Small wiring helpers shared by the workflows (no domain logic here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_recon.interfaces.outputs import DerivativesSink

if TYPE_CHECKING:
    from bids_recon.bids.layout import SubjectInputs
    from bids_recon.naming import SubjectOutputs


def gather(wf: pe.Workflow, sources: list[tuple[Any, str]], name: str, flatten: bool = True) -> pe.Node:
    """A Merge node collecting ``(node, output)`` pairs, in order (slots are numbered here, never by hand).

    Parameters
    ----------
    wf : Workflow
        Where the Merge node is added.
    sources : list of (node, field)
        Outputs to collect; ``field`` may be ``(field, function, *args)`` as in ``Workflow.connect``.
    flatten : bool
        Flatten list outputs into one list (``ravel_inputs``).
    """
    merge = pe.Node(niu.Merge(max(len(sources), 1), ravel_inputs=flatten), name=name)
    for slot, (node, field) in enumerate(sources, start=1):
        wf.connect(node, field, merge, f"in{slot}")
    return merge


def sink(output_dir: Path | str, naming: dict[str, Any], name: str, sidecar: dict | None = None) -> pe.Node:
    """A ``ds_*`` node writing one output named by entities (``naming`` from ``SubjectOutputs.sink``)."""
    return pe.Node(DerivativesSink(output_dir=str(output_dir), **naming, sidecar=sidecar or {}), name=name)


def relative_to(path: Path | str, root: Path | str) -> str:
    """``path`` relative to ``root`` (POSIX), or as given when it is elsewhere."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def pick(mapping: dict, key: str):
    """``mapping[key]`` (a connection function)."""
    return mapping[key]


def as_extra(path: str, extension: str) -> dict[str, str]:
    """``{extension: path}``, for a sink's ``extra_files`` (a connection function)."""
    return {extension: path}


def pick_extra(values, key, extension: str) -> dict[str, str]:
    """``{extension: values[key]}`` (a connection function; ``values`` a list or a dict)."""
    return {extension: values[key]}


def decoder_sidecar(path: str) -> dict[str, str]:
    """The JSON a decoder node wrote beside its ``.npz`` (a connection function)."""
    from bids_recon.naming import sidecar_path

    return {".json": str(sidecar_path(path))}


def read_outputs(names: SubjectOutputs, inputs: SubjectInputs | None, rois: dict[str, str | None] | None = None,
                 *more: Path) -> list[str]:
    """The ``bids::`` URIs of this dataset's own outputs a later stage reads (its sidecar's ``Sources``): every run's
    single-trial betas (none for imported betas, which are not written), the trial table, the brain mask, the ROI
    masks ``rois`` (ROI name -> atlas, as named by :meth:`SubjectOutputs.roi_mask`) and ``more`` (relative paths).
    """
    from bids_recon.naming import own_uri

    runs = inputs.runs if inputs is not None and inputs.imported is None else []
    paths = [names.betas(r.session, r.run, task=r.task) for r in runs]
    paths += [names.trials(), names.brain_mask(), *(names.roi_mask(roi, atlas) for roi, atlas in (rois or {}).items()),
              *more]
    return [own_uri(p) for p in paths]
