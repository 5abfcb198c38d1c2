"""``bold5000``: BOLD5000's release-2 single-trial betas (Chang et al. 2019; figshare 14456124).

``--betas bold5000=DIR`` where ``DIR`` holds, per participant ``CSI{n}`` (found anywhere under it):

- ``CSI{n}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-NN.nii.gz``: one 4D image per session, one volume per trial
  (GLMsingle's type D, percent signal change, float);
- ``CSI{n}_imgnames.txt``: the image of every trial, one file name per line, sessions one after the other;
- ``CSI{n}_brainmask.nii.gz``: the betas' brain mask.

The trial of line ``i`` is the ``i``-th volume of the sessions in order; the stimulus ids are the file names, as the
``files`` resolver finds them (by bare name in ``BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli``). Participants
``CSI1``... are ``sub-CSI1`` (ds001499's labels); sessions ``01``...
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.glm.importers import register
from bids_recon.glm.importers.base import (
    BetaFile,
    BetaImporter,
    ImportedSession,
    ImportPlan,
    check_series,
    iter_nifti_blocks,
    nifti_header,
    session_trials,
    wanted_sessions,
)

BETAS_NAME = "{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{n:02d}.nii.gz"
_BETAS = re.compile(r"^(CSI\d+)_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-(\d+)\.nii(\.gz)?$")


@register
class Bold5000Importer(BetaImporter):
    """BOLD5000's GLMsingle betas, one 4D NIfTI per session, named by ``imgnames.txt``."""

    format = "bold5000"
    summary = ("BOLD5000 release 2: CSI{n}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-NN.nii.gz, trials named by "
               "CSI{n}_imgnames.txt, CSI{n}_brainmask.nii.gz")
    space = "T1w"
    task = "5000scenes"

    def _files(self) -> dict[str, dict[int, Path]]:
        found: dict[str, dict[int, Path]] = {}
        for path in sorted(self.path.rglob("CSI*_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-*.nii*")):
            match = _BETAS.match(path.name)
            if match:
                found.setdefault(match.group(1), {})[int(match.group(2))] = path
        return found

    def subjects(self) -> list[str]:
        return sorted(self._files(), key=lambda s: int(s[3:]))

    def _companion(self, subject: str, suffix: str, near: Path) -> Path | None:
        for folder in (near.parent, self.path):
            candidate = folder / f"{subject}_{suffix}"
            if candidate.is_file():
                return candidate
        found = sorted(self.path.rglob(f"{subject}_{suffix}"))
        return found[0] if found else None

    def plan(self, subject: str, sessions: list[str] | None = None) -> ImportPlan:
        files = self._files().get(subject)
        if not files:
            raise MissingInputError(f"no {subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-NN.nii.gz under it",
                                    self.path)
        first_file = files[min(files)]
        names_file = self._companion(subject, "imgnames.txt", first_file)
        if names_file is None:
            raise MissingInputError(f"{subject}_imgnames.txt (the image of each trial) not found", self.path)
        names = [line.strip() for line in names_file.read_text(errors="replace").splitlines() if line.strip()]
        mask_file = self.mask_option() or self._companion(subject, "brainmask.nii.gz", first_file)
        labels = {f"{n:02d}": n for n in sorted(files)}
        check_series(files, BETAS_NAME.replace("{subject}", subject), first_file.parent, names_file)
        chosen = wanted_sessions(sessions, labels) or list(labels)
        headers = {n: nifti_header(files[n]) for n in sorted(files)}
        for n, (shape, _, _) in headers.items():
            if len(shape) != 4:
                raise BadDataError(f"expected a 4D image (X x Y x Z x trials), got shape {shape}", files[n])
        total = sum(h[0][3] for h in headers.values())
        if total != len(names):
            per = ", ".join(f"ses-{n:02d} {h[0][3]}" for n, h in headers.items())
            raise BadDataError(f"{len(names)} image names but the {len(files)} sessions' betas hold {total} trials "
                               f"({per}; first {first_file.name}): trials the betas lack, or the reverse", names_file)
        offsets = np.cumsum([0] + [h[0][3] for h in headers.values()])
        start_of = dict(zip(sorted(files), offsets[:-1], strict=True))
        resolver = _resolver_class(self.context.stimuli)
        shape0, affine0, dtype0 = headers[labels[chosen[0]]]
        out = []
        for label in chosen:
            n = labels[label]
            shape, affine, dtype = headers[n]
            if shape[:3] != shape0[:3] or not np.allclose(affine, affine0, atol=1e-3):
                raise BadDataError(f"grid {'x'.join(map(str, shape[:3]))} differs from "
                                   f"{'x'.join(map(str, shape0[:3]))} of {files[labels[chosen[0]]].name}", files[n])
            if dtype != dtype0:
                raise BadDataError(f"stored as {dtype} where {files[labels[chosen[0]]].name} is {dtype0}", files[n])
            session_names = names[start_of[n]:start_of[n] + shape[3]]
            ids = [resolver.normalise_id(name, "stim_file") for name in session_names]
            table = session_trials(subject, label, ["n/a"] * len(ids), ids, session_names)
            out.append(ImportedSession(label, [BetaFile(files[n], int(shape[3]))], table))
        sample = next(iter_nifti_blocks(files[labels[chosen[0]]], 1))[1]
        scale, note = self.decide_scale(dtype0, sample[:1], files[labels[chosen[0]]])
        return ImportPlan(self.format, subject, self.path, out, tuple(shape0[:3]), affine0, scale, note, self.units,
                          mask_file, [names_file], self.space, self.task, str(dtype0))


def _resolver_class(stimuli):
    from bids_recon.features.resolvers import resolver_class

    return resolver_class(stimuli)


__all__ = ["Bold5000Importer"]
