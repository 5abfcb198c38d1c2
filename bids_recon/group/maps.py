"""The participants' encoding maps averaged voxel by voxel, in their template space."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.io import atomic_write, read_tsv, write_json, write_tsv
from bids_recon.naming import SubjectOutputs, find_outputs, group_encoding_path, own_uri, sidecar_path


def on_grid(img: nib.spatialimages.SpatialImage, reference: nib.spatialimages.SpatialImage
            ) -> nib.spatialimages.SpatialImage:
    """``img`` on ``reference``'s grid (nearest neighbour), or ``img`` itself when the grids agree."""
    if img.shape[:3] == reference.shape[:3] and np.allclose(img.affine, reference.affine, atol=1e-3):
        return img
    from nilearn.image import resample_to_img

    return resample_to_img(img, reference, interpolation="nearest", force_resample=True, copy_header=True)


def mean_over_participants(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each voxel's mean over the participants that have a value there.

    Parameters
    ----------
    stack : ndarray, shape (n_participants, X, Y, Z)
        One map per participant on one grid; ``NaN`` where a participant did not model the voxel.

    Returns
    -------
    mean : ndarray of float32, shape (X, Y, Z)
        ``NaN`` where no participant has a value.
    count : ndarray of int, shape (X, Y, Z)
        The participants averaged at each voxel.
    """
    count = np.isfinite(stack).sum(0)
    mean = np.where(count > 0, np.nansum(stack, 0) / np.maximum(count, 1), np.nan).astype(np.float32)
    return mean, count


def average_encoding_maps(output_dir: Path, participants: list[str] | None = None,
                          stats: tuple[str, ...] = ("r", "uniquevariance")) -> list[dict]:
    """Average every participant's encoding maps (in their template space) and write them under ``group/``.

    Maps of one (task, space, res, model, stat) are averaged voxel by voxel over the participants that modelled
    the voxel (``NaN`` elsewhere; :func:`mean_over_participants`); a map on another grid than the first
    participant's is resampled to it (nearest neighbour; :func:`on_grid`). Each written map has a sidecar with its
    participants and sources; the participants' ROI tables are gathered into one table per (task, space, res).

    Returns
    -------
    list of dict
        Per (task, space, res): ``task``, ``space``, ``res``, ``mask`` (the union of the participants' brain masks,
        written), ``maps`` (``(model, stat)`` -> written map), ``table`` (every participant's ROI rows, with
        ``participant_id``), ``participants``.
    """
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
            union |= np.asarray(on_grid(nib.load(mask), reference).dataobj) > 0
        mask_path = output_dir / group_encoding_path(task, space, res, "brain", "mask")
        mask_img = nib.Nifti1Image(union.astype(np.uint8), reference.affine)
        atomic_write(mask_path, lambda tmp, img=mask_img: nib.save(img, tmp))
        written, single = {}, set()
        for (model, stat), per in sorted(maps.items()):
            stack = np.stack([np.asarray(on_grid(nib.load(p), reference).dataobj, dtype=np.float32)
                              for p in per.values()])
            mean, count = mean_over_participants(stack)
            out = output_dir / group_encoding_path(task, space, res, f"encoding{model}", stat=stat)
            img = nib.Nifti1Image(mean, reference.affine)
            atomic_write(out, lambda tmp, img=img: nib.save(img, tmp))
            write_json(sidecar_path(out), {
                "Description": f"mean over participants of the encoding model '{model}' map stat-{stat} (each voxel "
                               "over the participants that modelled it)",
                "Participants": [f"sub-{s}" for s in per], "MaxParticipantsPerVoxel": int(count.max()),
                "Sources": [own_uri(p.relative_to(output_dir)) for p in per.values()]})
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


__all__ = ["average_encoding_maps", "mean_over_participants", "on_grid"]
