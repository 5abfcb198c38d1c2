"""``bids``: bids_recon's own single-trial betas, so that a second analysis reuses a first one's.

``--betas bids=OUTPUT_DIR`` reads, for each participant, the ``..._desc-singletrial_stat-effect_statmap.nii.gz``
of every run (percent signal change, one volume per trial, before the session z-scoring) with the ``.tsv`` beside it
(the trial rows, :data:`~bids_recon.design.table.TRIAL_COLUMNS`), and the ``desc-brain_mask`` of the participant:
the same betas the first run's decoders saw, so a new generator, ROI set or test split needs no GLM. The metadata
a ``--test-split COLUMN=VALUE`` rule reads are the table's columns (``split`` is the first run's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bids_recon.design.table import NOT_DECODED, TRIAL_COLUMNS, read_trials
from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.glm.importers import register
from bids_recon.glm.importers.base import (
    BetaFile,
    BetaImporter,
    ImportedSession,
    ImportPlan,
    iter_nifti_blocks,
    nifti_header,
    wanted_sessions,
)
from bids_recon.naming import find_outputs, split_extension


@register
class BidsImporter(BetaImporter):
    """bids_recon's single-trial statmaps and their trial tables."""

    format = "bids"
    summary = "bids_recon's own single-trial statmaps (desc-singletrial_stat-effect) and trial tables"

    def _runs(self, subject: str) -> list[tuple[Path, dict[str, str]]]:
        return find_outputs(self.path, "betas", sub=subject)

    def subjects(self) -> list[str]:
        return sorted({ents["sub"] for _, ents in find_outputs(self.path, "betas")})

    def plan(self, subject: str, sessions: list[str] | None = None) -> ImportPlan:
        runs = self._runs(subject)
        if not runs:
            raise MissingInputError(f"no single-trial betas of sub-{subject} (*_desc-singletrial_stat-effect_statmap"
                                    ".nii.gz): not a bids_recon output folder?", self.path)
        by_session: dict[str, list[tuple[Path, dict[str, str]]]] = {}
        for path, ents in runs:
            by_session.setdefault(ents.get("ses", "n/a"), []).append((path, ents))
        labels = {label: i + 1 for i, label in enumerate(sorted(by_session))}
        chosen = wanted_sessions(sessions, labels) or list(labels)
        masks = find_outputs(self.path, "brain_mask", sub=subject)
        mask_file = self.mask_option() or (masks[0][0] if masks else None)
        shape0 = affine0 = dtype0 = first = None
        out, design = [], []
        for label in chosen:
            files, tables = [], []
            for path, ents in sorted(by_session[label], key=lambda item: item[1].get("run", "")):
                shape, affine, dtype = nifti_header(path)
                n = int(shape[3]) if len(shape) == 4 else 1
                if shape0 is None:
                    shape0, affine0, dtype0, first, space = shape, affine, dtype, path, ents
                elif shape[:3] != shape0[:3] or not np.allclose(affine, affine0, atol=1e-3):
                    raise BadDataError(f"grid {'x'.join(map(str, shape[:3]))} differs from "
                                       f"{'x'.join(map(str, shape0[:3]))} of {first.name}", path)
                tsv = path.with_name(split_extension(path.name)[0] + ".tsv")
                if not tsv.is_file():
                    raise MissingInputError(f"the trial rows of {path.name} do not exist", tsv)
                table = read_trials(tsv)
                missing = [c for c in TRIAL_COLUMNS if c not in table]
                if missing:
                    raise BadDataError(f"no {', '.join(missing)} column: not a bids_recon trial table", tsv)
                if len(table) != n:
                    raise BadDataError(f"{path.name} holds {n} trials but {tsv.name} lists {len(table)}: trials the "
                                       "betas lack, or the reverse", tsv)
                files.append(BetaFile(path, n))
                tables.append(table)
                design.append(tsv)
            import pandas as pd

            table = pd.concat(tables, ignore_index=True)
            trials = table[TRIAL_COLUMNS].copy()
            trials["split"] = np.where(trials["split"].astype(str) == NOT_DECODED, NOT_DECODED, "train")
            trials["repeat"] = 0
            out.append(ImportedSession(label if label != "n/a" else "n/a", files, trials,
                                       table.drop(columns=["subject", "session", "task", "run", "trial_index"])))
        sample = next(iter_nifti_blocks(out[0].files[0].path, 1))[1]
        scale, note = self.decide_scale(dtype0, sample[:1], out[0].files[0].path)
        return ImportPlan(self.format, subject, self.path, out, tuple(shape0[:3]), affine0, scale, note, self.units,
                          mask_file, design, space.get("space", ""), space.get("task", self.task), str(dtype0),
                          space.get("res"))


__all__ = ["BidsImporter"]
