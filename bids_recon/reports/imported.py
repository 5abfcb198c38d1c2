"""The report's beta section when the betas were imported (``--betas``): where they came from, not GLM maps."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bids_recon.naming import SubjectOutputs, sidecar_path
from bids_recon.reports.html import Figure, Section


def imported_provenance(output_dir: Path, names: SubjectOutputs) -> dict | None:
    """The ``ImportedBetas`` record of the trial table's sidecar (``None``: the betas were estimated here)."""
    sidecar = sidecar_path(Path(output_dir) / names.trials())
    if not sidecar.is_file():
        return None
    return json.loads(sidecar.read_text()).get("ImportedBetas")


def imported_betas_section(output_dir: Path, names: SubjectOutputs, trial_table: pd.DataFrame,
                           figures: list[Figure], tables: list[tuple[str, pd.DataFrame]]) -> Section | None:
    """The section that replaces the GLM's when the betas were imported, else ``None``.

    Parameters
    ----------
    figures, tables
        The beta stage's maps (the noise ceiling) and tables, shown as for estimated betas.
    """
    record = imported_provenance(output_dir, names)
    if record is None:
        return None
    files = pd.DataFrame([{"file": Path(f["Path"]).name, "folder": str(Path(f["Path"]).parent),
                           "bytes": f.get("Bytes"), "modified": f.get("Modified"),
                           "sha256": f.get("Sha256", "(not hashed: large file; size and date recorded)")}
                          for f in record.get("Files", [])])
    sessions = pd.DataFrame([{"session": k, "trials": v} for k, v in (record.get("Sessions") or {}).items()])
    text = (
        f"The single-trial betas were imported, not estimated: format '{record.get('Format')}' from "
        f"{record.get('Source')}. {len(trial_table)} decoded trials in {trial_table['session'].nunique()} "
        f"session(s). Scale: {record.get('ScaleNote')}; units after scaling: {record.get('Units')}. Voxels read: "
        f"{record.get('Voxels')} ({record.get('VoxelCount')}; brain mask: {record.get('MaskFile')}). Betas are "
        "z-scored per voxel within each session (unless configured otherwise), as estimated ones are; the noise "
        "ceiling is computed from repeated stimuli. The files read are listed below (sha256 of the files up to "
        "64 MB; size and modification time of all)."
    )
    return Section(title="Single-trial betas (imported)", text=text, figures=list(figures),
                   tables=[("Imported files", files), ("Trials per session", sessions), *tables])


__all__ = ["imported_betas_section", "imported_provenance"]
