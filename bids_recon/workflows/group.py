"""Group level: gather every participant's metrics in output_dir into one table and one report."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from bids_recon.bids.derivatives import find_outputs
from bids_recon.config import Config
from bids_recon.errors import EmptySelectionError, MissingInputError
from bids_recon.io import read_tsv, write_tsv

LOGGER = logging.getLogger("bids_recon.group")


def collect_group_metrics(output_dir: Path, participants: list[str] | None = None) -> pd.DataFrame:
    """Every participant's metrics tables in ``output_dir``, with a ``participant_id`` column.

    Returns
    -------
    pandas.DataFrame
        ``participant_id, task`` and the columns of the metrics tables (``metric, label, method, value, chance,
        sd, samples, selection, direction, kind, status, note, n, ...``).
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise MissingInputError("output folder does not exist: run the participant level first", output_dir)
    wanted = {p.removeprefix("sub-") for p in participants or []}
    frames = []
    for path, entities in find_outputs(output_dir, "metrics"):
        if wanted and entities.get("sub") not in wanted:
            continue
        table = read_tsv(path)
        table.insert(0, "participant_id", f"sub-{entities['sub']}")
        table.insert(1, "task", entities.get("task", "n/a"))
        frames.append(table)
    if not frames:
        betas_only = any(True for _ in find_outputs(output_dir, "trials"))
        raise EmptySelectionError(
            "no participant metrics found (sub-*/recon/*_metrics.tsv): "
            + ("the participant level ran with --betas-only (betas, no reconstructions): the group level compares "
               "reconstructions; run the participant level without --betas-only" if betas_only else
               "run the participant level first"), output_dir)
    return pd.concat(frames, ignore_index=True)


def published_comparison(output_dir: Path, participants: list[str] | None = None) -> dict:
    """Whether every participant's run is comparable with the published rows (their metrics sidecars say)."""
    import json

    from bids_recon.bids.derivatives import sidecar_path

    wanted = {p.removeprefix("sub-") for p in participants or []}
    found = []
    for path, entities in find_outputs(Path(output_dir), "metrics"):
        if wanted and entities.get("sub") not in wanted:
            continue
        sidecar = sidecar_path(path)
        found.append(json.loads(sidecar.read_text()).get("PublishedComparison", {}) if sidecar.is_file() else {})
    reasons = [c.get("Reason") or "different data: not recorded" for c in found if not c.get("Comparable")]
    return {"Comparable": bool(found) and not reasons, "Reason": reasons[0] if reasons else ""}


def run_group(config: Config) -> Path:
    """Write the group metrics table(s) and ``group.html``; return the report's path.

    Raises
    ------
    BadDataError
        A participant in scope is marked incomplete (``sub-<label>_INCOMPLETE.txt``: its run did not finish).
    """
    from bids_recon.bids.derivatives import group_metrics_path, group_report_path, refuse_incomplete

    output_dir = Path(config.execution.output_dir)
    refuse_incomplete(output_dir, config.execution.participant_label, "the group level")
    from bids_recon.reports.group import build_group_report

    table = collect_group_metrics(output_dir, config.execution.participant_label)
    for task, rows in table.groupby("task"):
        write_tsv(output_dir / group_metrics_path(str(task)), rows.reset_index(drop=True))
    from bids_recon.reports.group import encoding_group_sections

    groups = average_encoding_maps(output_dir, config.execution.participant_label)
    encoding = encoding_group_sections(output_dir, groups)
    report = build_group_report(output_dir, table, output_dir / group_report_path(),
                                published_comparison(output_dir, config.execution.participant_label),
                                extra_sections=encoding)
    LOGGER.info("Group: %d participants; report %s", table["participant_id"].nunique(), report)
    return report


def average_encoding_maps(output_dir: Path, participants: list[str] | None = None,
                          stats: tuple[str, ...] = ("r", "uniquevariance")) -> list[dict]:
    """Average every participant's encoding maps (in their template space) and write them under ``group/``.

    Maps of one (task, space, res, model, stat) are averaged voxel by voxel over the participants that modelled
    the voxel (``NaN`` elsewhere); a map on another grid than the first participant's is resampled to it (nearest
    neighbour). Each written map has a sidecar with its participants and sources; the participants' ROI tables
    are gathered into one table per (task, space, res).

    Returns
    -------
    list of dict
        Per (task, space, res): ``task``, ``space``, ``res``, ``mask`` (the union of the participants' brain masks,
        written), ``maps`` (``(model, stat)`` -> written map), ``table`` (every participant's ROI rows, with
        ``participant_id``), ``participants``.
    """
    import json

    import nibabel as nib
    import numpy as np

    from bids_recon.bids.derivatives import SubjectOutputs, group_encoding_path, sidecar_path
    from bids_recon.io import atomic_write, write_json

    output_dir = Path(output_dir)
    wanted = {p.removeprefix("sub-") for p in participants or []}
    found: dict[tuple, dict] = {}
    for path, ents in find_outputs(output_dir, "encoding_map"):
        desc, stat = ents.get("desc", ""), ents.get("stat", "")
        if not desc.startswith("encoding") or stat not in stats or (wanted and ents["sub"] not in wanted):
            continue
        group = found.setdefault((ents.get("task"), ents.get("space"), ents.get("res")), {})
        group.setdefault((desc.removeprefix("encoding"), stat), {})[ents["sub"]] = path
    results = []
    for (task, space, res), maps in sorted(found.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        subjects = sorted({s for per in maps.values() for s in per})
        reference = nib.load(next(iter(next(iter(maps.values())).values())))
        masks = [output_dir / SubjectOutputs(s, task, space, res).brain_mask() for s in subjects]
        union = np.zeros(reference.shape[:3], dtype=bool)
        for mask in (m for m in masks if m.is_file()):
            union |= np.asarray(_on_grid(nib.load(mask), reference).dataobj) > 0
        mask_path = output_dir / group_encoding_path(task, space, res, "brain", "mask")
        mask_img = nib.Nifti1Image(union.astype(np.uint8), reference.affine)
        atomic_write(mask_path, lambda tmp, img=mask_img: nib.save(img, tmp))
        written, single = {}, set()
        for (model, stat), per in sorted(maps.items()):
            stack = np.stack([np.asarray(_on_grid(nib.load(p), reference).dataobj, dtype=np.float32)
                              for p in per.values()])
            count = np.isfinite(stack).sum(0)
            mean = np.where(count > 0, np.nansum(stack, 0) / np.maximum(count, 1), np.nan).astype(np.float32)
            out = output_dir / group_encoding_path(task, space, res, f"encoding{model}", stat=stat)
            img = nib.Nifti1Image(mean, reference.affine)
            atomic_write(out, lambda tmp, img=img: nib.save(img, tmp))
            write_json(sidecar_path(out), {
                "Description": f"mean over participants of the encoding model '{model}' map stat-{stat} (each voxel "
                               "over the participants that modelled it)",
                "Participants": [f"sub-{s}" for s in per], "MaxParticipantsPerVoxel": int(count.max()),
                "Sources": [p.relative_to(output_dir).as_posix() for p in per.values()]})
            written[(model, stat)] = out
            first = sidecar_path(next(iter(per.values())))
            if first.is_file() and len(json.loads(first.read_text()).get("FeatureSpaces", [])) == 1:
                single.add(model)
        tables = []
        for s in subjects:
            table_path = output_dir / SubjectOutputs(s, task, space, res).encoding_summary()
            if table_path.is_file():
                table = read_tsv(table_path)
                table.insert(0, "participant_id", f"sub-{s}")
                tables.append(table)
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
        if tables:
            write_tsv(output_dir / group_encoding_path(task, space, res, "rois", "encoding", ".tsv"), table)
        results.append({"task": task, "space": space, "res": res, "mask": mask_path, "maps": written,
                        "spaces": [m for m in dict.fromkeys(m for m, _ in written) if m in single],
                        "table": table, "participants": [f"sub-{s}" for s in subjects]})
    return results


def _on_grid(img, reference):
    """``img`` on ``reference``'s grid (nearest neighbour), or ``img`` itself when the grids agree."""
    import numpy as np

    if img.shape[:3] == reference.shape[:3] and np.allclose(img.affine, reference.affine, atol=1e-3):
        return img
    from nilearn.image import resample_to_img

    return resample_to_img(img, reference, interpolation="nearest", force_resample=True, copy_header=True)
