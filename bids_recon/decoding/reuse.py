"""Decoders reused from an earlier bids_recon run (``--decoders-from DIR``): found, checked, applied, never refitted.

An earlier run's output folder ``DIR`` holds, per participant, the fitted decoders
(``sub-XX/decoding/sub-XX_task-T_label-ROI_desc-TARGET_decoder.npz`` + ``.json``), the brain mask their
``voxel_indices`` index, the ROI masks and the trial table whose ``train`` rows they were trained on. A run with
``--decoders-from DIR`` trains nothing: for each decoder it would fit it loads DIR's decoder of the same participant,
ROI and target, checks that it reads the same voxels and predicts the same features, and applies it to this run's
z-scored betas of every stimulus DIR's decoder was not trained on, averaged over this run's presentations.

Plain functions on arrays and paths (no nipype); every refusal is a :class:`~bids_recon.errors.BadDataError`
(exit 65) whose message names both runs' files and what differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.decoding.ridge import DecodedTest, RidgeDecoder, average_repeats
from bids_recon.design.table import NOT_DECODED, read_trials
from bids_recon.errors import BadDataError
from bids_recon.invariants import check_finite
from bids_recon.io import sha256_file
from bids_recon.naming import find_outputs, output_path, parse_name, sanitize_label, sidecar_path

#: Suffix of the linear generator's PCA basis saved beside its decoder (``..._desc-imagepca_basis.npz``).
BASIS_KIND = "basis"
#: Decoder sidecar key: the stimulus resolver kind whose ids name the training stimuli (``nsd``: NSD's 73k ids;
#: ``nsdsynthetic``: NSD-synthetic's own image numbers). Ids of two kinds name different images.
STIMULUS_IDS_KEY = "StimulusIds"


def stimulus_id_kind(resolver: str) -> str:
    """The kind of a ``workflow.stimuli.resolver`` spec (``KIND[:KEY=VALUE,...]``): the namespace of its ids."""
    return str(resolver).split(":", 1)[0].strip().lower()


def same_stimulus_ids(source_kind: str | None, kind: str) -> bool:
    """Whether the earlier decoder's training stimulus ids (resolver kind ``source_kind``, from its sidecar) name the
    same images as this run's (``kind``); unknown (a sidecar without the key): assumed the same, so that every id
    seen in training is left out."""
    return not source_kind or not kind or source_kind == kind


def _subjects_with_decoders(folder: Path) -> list[str]:
    return sorted({ents["sub"] for _, ents in find_outputs(folder, "decoder")})


def _listing(found: list[tuple[Path, dict[str, str]]]) -> str:
    return ", ".join(f"label-{e.get('label')} desc-{e.get('desc')}" for _, e in found) or "none"


def find_source_decoders(folder: Path | str, subject: str, task: str, wanted: list[tuple[str, str]],
                         this_run: str = "this run") -> dict[tuple[str, str], Path]:
    """The earlier run's decoder file of each ``(roi, target)`` this run would fit, for ``subject``.

    Parameters
    ----------
    folder : path
        The earlier run's output folder (``--decoders-from``).
    subject, task : str
        This run's participant and task labels (without ``sub-``/``task-``); a decoder of another task is taken when
        it is the only one of its ROI and target.
    wanted : list of (roi, target)
        The decoders this run's generator fits (:meth:`GeneratorCard.decoders`).
    this_run : str
        How messages name this run (its output folder).

    Raises
    ------
    BadDataError
        DIR is not a folder or holds no decoder of ``subject`` (naming the participants it has decoders of), or its
        set of decoders of ``subject`` is not this run's (another generator, ROI or target).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadDataError(f"--decoders-from: not a folder (it should be the output folder of an earlier bids_recon "
                           f"run, to be used by {this_run})", folder)
    mine = find_outputs(folder, "decoder", sub=subject)
    if not mine:
        others = _subjects_with_decoders(folder)
        if others:
            held = ", ".join(f"sub-{s}" for s in others)
            raise BadDataError(
                f"--decoders-from: DIR holds decoders of {held}, not sub-{subject}: decoders are bound to one "
                f"participant's voxels; align sub-{subject} to a shared space instead (bids_recon ... group "
                f"--shared-space) (DIR = {folder}, this run = {this_run})")
        raise BadDataError(f"--decoders-from: no decoders (sub-*/decoding/*_decoder.npz) in {folder}, so none of "
                           f"sub-{subject} for {this_run}: is it the output folder of a bids_recon run that fitted "
                           "decoders?", folder)
    found: dict[tuple[str, str], Path] = {}
    for roi, target in wanted:
        label, desc = sanitize_label(roi), sanitize_label(target)
        hits = [(p, e) for p, e in mine if e.get("label") == label and e.get("desc") == desc]
        if len(hits) > 1:
            hits = [(p, e) for p, e in hits if e.get("task") == task] or hits
        if len(hits) != 1:
            raise BadDataError(
                f"--decoders-from: {this_run} decodes {target} from ROI {roi} of sub-{subject}, but {folder} has "
                f"{'no' if not hits else 'several'} such decoder of sub-{subject} (it has: {_listing(mine)}): the "
                "earlier run used another generator, ROI or target; rerun it with this run's generator and ROIs, or "
                "configure this run as it was", folder)
        found[(roi, target)] = hits[0][0]
    extra = [(p, e) for p, e in mine if p not in found.values()
             and (e.get("label"), e.get("desc")) not in {(sanitize_label(r), sanitize_label(t)) for r, t in wanted}]
    if extra:
        raise BadDataError(
            f"--decoders-from: {folder} has decoders of sub-{subject} that {this_run} would not fit "
            f"({_listing(extra)}; this run fits {', '.join(f'label-{r} desc-{t}' for r, t in wanted)}): the earlier "
            "run used another generator, ROI or target set", folder)
    return found


def source_trials(folder: Path | str, subject: str, decoder: Path | str) -> Path:
    """The earlier run's trial table of ``subject`` (of the decoder's task), or BadDataError."""
    task = parse_name(decoder)[0].get("task")
    found = find_outputs(Path(folder), "trials", sub=subject, **({"task": task} if task else {}))
    if not found:
        raise BadDataError(f"--decoders-from: no trial table of sub-{subject} (*_desc-singletrial_trials.tsv) beside "
                           f"the decoder {decoder}: which stimuli it was trained on is unknown", folder)
    return found[0][0]


def training_stimuli(trials_file: Path | str) -> tuple[set[str], int]:
    """The stimulus ids of the ``train`` rows of a trial table, and how many such trials there are."""
    trials = read_trials(trials_file)
    train = trials["split"].astype(str) == "train"
    return set(trials.loc[train, "stim_id"].astype(str)), int(train.sum())


def source_brain_mask(folder: Path | str, subject: str) -> Path:
    """The earlier run's brain mask of ``subject`` (what its decoders' ``voxel_indices`` index)."""
    found = find_outputs(Path(folder), "brain_mask", sub=subject)
    if not found:
        raise BadDataError(f"--decoders-from: no brain mask of sub-{subject} (*_desc-brain_mask.nii.gz) in {folder}: "
                           "the voxels its decoders read are unknown", folder)
    return found[0][0]


def source_roi_mask(folder: Path | str, subject: str, roi: str) -> Path | None:
    """The earlier run's mask of ``roi`` for ``subject``, or None (a union of ROIs has no mask of its own)."""
    found = find_outputs(Path(folder), "roi_mask", sub=subject, label=sanitize_label(roi))
    return found[0][0] if found else None


def check_same_voxels(source_mask: nib.Nifti1Image, this_mask: nib.Nifti1Image, source_name: str,
                      this_name: str) -> None:
    """Refuse two brain masks that differ in shape, affine or voxel set (the decoders' columns would not be the same
    voxels)."""
    a, b = np.asarray(source_mask.dataobj) > 0, np.asarray(this_mask.dataobj) > 0
    if a.shape != b.shape:
        raise BadDataError(f"--decoders-from: the brain masks differ in shape: {source_name} is {a.shape}, "
                           f"{this_name} is {b.shape}; decoders read voxels of their own grid")
    if not np.allclose(source_mask.affine, this_mask.affine, atol=1e-4):
        raise BadDataError(f"--decoders-from: the brain masks differ in affine (voxel to world): {source_name} has "
                           f"{np.round(source_mask.affine, 4).tolist()}, {this_name} has "
                           f"{np.round(this_mask.affine, 4).tolist()}")
    if not np.array_equal(a, b):
        raise BadDataError(f"--decoders-from: the brain masks differ in their voxels: {source_name} has "
                           f"{int(a.sum())}, {this_name} {int(b.sum())}, {int((a != b).sum())} differ; the decoders' "
                           "voxel_indices would name other voxels")


def check_same_roi(decoder: RidgeDecoder, voxel_indices: np.ndarray, source_name: str, this_name: str,
                   roi: str) -> None:
    """Refuse a decoder whose ``voxel_indices`` are not this run's ROI columns (the same brain mask assumed)."""
    theirs, mine = np.asarray(decoder.voxel_indices, np.int64), np.asarray(voxel_indices, np.int64)
    if theirs.shape != mine.shape or not np.array_equal(theirs, mine):
        common = len(np.intersect1d(theirs, mine))
        raise BadDataError(f"--decoders-from: ROI {roi} differs: {source_name} reads {len(theirs)} voxels, "
                           f"{this_name} has {len(mine)} ({common} in common); the decoder would read other voxels")


#: Sidecar keys that name a file where it lies, not what it is (left out of the model identity).
_WHERE = ("Path", "File", "Files", "Folder")


def model_signature(identity: dict[str, Any]) -> dict[str, str]:
    """``FeatureModel`` and ``ModelHash`` of a feature model's sidecar identity (what decoded features mean).

    ``FeatureModel`` is the model's id (``ModelId``, else ``Generator``, else ``Target``); ``ModelHash`` the sha256
    of every ``...SHA256`` key of ``identity`` (weights, state), so that the same model found in another folder has
    the same signature. Computed the same from an old sidecar that recorded the identity without these keys.
    """
    hashes = {k: v for k, v in identity.items() if k.endswith("SHA256") and k != "ModelHash"}
    model = identity.get("FeatureModel") or identity.get("ModelId") or identity.get("Generator") or \
        identity.get("Target", "")
    digest = hashlib.sha256(json.dumps(hashes, sort_keys=True, default=str).encode()).hexdigest()
    return {"FeatureModel": str(model), "ModelHash": digest}


def check_same_model(source_sidecar: dict[str, Any], target: str, identity: dict[str, Any], source_name: str,
                     this_name: str) -> None:
    """Refuse a decoder of another target, or of features of another model (``identity``: this run's model's sidecar
    keys; empty for a target without a model, e.g. a PCA basis reused from the earlier run)."""
    theirs = str(source_sidecar.get("Target", ""))
    if theirs != target:
        raise BadDataError(f"--decoders-from: {source_name} decodes Target {theirs!r}, {this_name} needs {target!r}")
    if not identity:
        return
    if not any(k.endswith("SHA256") for k in source_sidecar):
        raise BadDataError(f"--decoders-from: {source_name} records no feature model identity (no ...SHA256 key): "
                           f"whether it decodes the features of {this_name}'s model "
                           f"({model_signature(identity)['FeatureModel']}) is unknown; rerun the earlier run with "
                           "this version")
    a, b = model_signature(source_sidecar), model_signature(identity)
    if a["ModelHash"] != b["ModelHash"]:
        raise BadDataError(f"--decoders-from: the feature models differ: {source_name} was trained on features of "
                           f"{a['FeatureModel']} (ModelHash {a['ModelHash'][:12]}), {this_name} computes them with "
                           f"{b['FeatureModel']} (ModelHash {b['ModelHash'][:12]})")


def decodable_stimuli(trials: pd.DataFrame, trained: set[str]) -> tuple[np.ndarray, list[str]]:
    """Rows of this run's trial table to decode: every decoded row (``split`` not ``none``) whose stimulus the earlier
    decoder was not trained on, whatever this run's own split says; and the excluded stimulus ids (sorted).

    Returns
    -------
    rows : ndarray of bool, shape (n_trials,)
    excluded : list of str
    """
    stims = trials["stim_id"].astype(str).to_numpy()
    decoded = (trials["split"].astype(str) != NOT_DECODED).to_numpy()
    seen = np.isin(stims, list(trained)) & decoded
    return decoded & ~seen, sorted(set(stims[seen]))


@dataclass
class Applied:
    """What :func:`apply_decoder` decoded: the features, and the stimuli left out as seen in training."""

    decoded: DecodedTest
    excluded: list[str]


def apply_decoder(decoder: RidgeDecoder, betas: np.ndarray, trials: pd.DataFrame, trained: set[str],
                  stim_ids: np.ndarray, features: np.ndarray, source_name: str = "the earlier run",
                  this_name: str = "this run") -> Applied:
    """Decode this run's repeat-averaged betas of every stimulus the decoder was not trained on.

    Parameters
    ----------
    decoder : RidgeDecoder
        The earlier run's decoder (its standardisation, weights, ``y_mean`` and ``voxel_indices``, columns of the
        brain-mask betas).
    betas : ndarray, shape (n_trials, n_brain_voxels)
        This run's z-scored betas, rows aligned with ``trials`` (a memory map: only the ROI's columns are read).
    trials : pandas.DataFrame
        This run's trial table (``stim_id``, ``split``).
    trained : set of str
        The stimuli of the decoder's training trials (the earlier run's ``train`` rows).
    stim_ids : ndarray of str, shape (n_stimuli,)
    features : ndarray, shape (n_stimuli, n_targets)
        The true features of this run's stimuli (``true`` of the result).
    """
    if len(betas) != len(trials):
        raise BadDataError(f"{len(betas)} beta rows but {len(trials)} trials")
    rows, excluded = decodable_stimuli(trials, trained)
    if not rows.any():
        raise BadDataError(f"--decoders-from: every stimulus of {this_name} was a training stimulus of "
                           f"{source_name} ({len(excluded)} excluded as seen in training): nothing is left to decode")
    row_of = {s: i for i, s in enumerate(np.asarray(stim_ids).astype(str))}
    trial_stims = trials["stim_id"].astype(str).to_numpy()
    missing = sorted(set(trial_stims[rows]) - set(row_of))
    if missing:
        raise BadDataError(f"no features for stimuli {missing[:5]}")
    if features.shape[1] != decoder.weights.shape[1]:
        raise BadDataError(f"--decoders-from: {source_name} decodes {decoder.weights.shape[1]} features, {this_name}'s "
                           f"targets have {features.shape[1]}")
    columns = np.asarray(decoder.voxel_indices, dtype=np.int64)
    if columns.size and columns.max() >= betas.shape[1]:
        raise BadDataError(f"--decoders-from: {source_name} reads voxel column {int(columns.max())}, {this_name} has "
                           f"{betas.shape[1]} brain voxels")
    roi_betas = np.asarray(betas[:, columns], dtype=np.float32)[rows]
    check_finite(roi_betas, "betas of the decoder's ROI voxels")
    mean_betas, ids, counts = average_repeats(roi_betas, trial_stims[rows])
    decoded = replace(decoder, voxel_indices=np.arange(len(columns))).predict(mean_betas)  # the ROI's columns read
    check_finite(decoded, "decoded features")
    true = np.asarray(features[[row_of[s] for s in ids]], dtype=np.float32)
    return Applied(DecodedTest(ids.astype(str), counts, decoded, true), excluded)


def source_record(path: Path | str) -> dict[str, str]:
    """How sidecars name a reused file: its absolute path and sha256."""
    return {"Path": str(Path(path).absolute()), "SHA256": sha256_file(Path(path))}


def read_sidecar(path: Path | str) -> dict[str, Any]:
    """The JSON sidecar of an output file ({} when there is none)."""
    side = sidecar_path(path)
    return json.loads(side.read_text()) if side.is_file() else {}


def basis_path(decoder: Path | str) -> Path:
    """Where the linear generator's PCA basis lies beside its decoder (``..._desc-<target>_basis.npz``)."""
    entities = {k: v for k, v in parse_name(decoder)[0].items() if k in ("sub", "task", "label", "desc")}
    return Path(decoder).parent / output_path(BASIS_KIND, entities).name


def find_basis(decoder: Path | str, this_run: str = "this run") -> Path:
    """The PCA basis the earlier run saved beside ``decoder``, or BadDataError saying to rerun that run."""
    path = basis_path(decoder)
    if not path.is_file():
        raise BadDataError(f"--decoders-from: {this_run} must reuse the PCA basis the decoder {decoder} was trained "
                           f"for, but the earlier run did not save it ({path.name}): rerun that run with this version "
                           "of bids_recon", path)
    return path


@dataclass(frozen=True)
class SourceSummary:
    """What the report says about reused decoders: the earlier run's folder name and its training trials."""

    folder: str
    subject: str
    n_train_trials: int

    def text(self) -> str:
        return f"from {self.folder} (sub-{self.subject}, trained on {self.n_train_trials} trials)"


def summarise_source(folder: Path | str, subject: str) -> SourceSummary:
    """The report's summary of the decoders reused from ``folder`` for ``subject`` (0 trials when unknown)."""
    found = find_outputs(Path(folder), "trials", sub=subject)
    n = training_stimuli(found[0][0])[1] if found else 0
    return SourceSummary(Path(folder).name, subject, n)


def methods_note(folder: Path | str) -> str:
    """The methods sentence of a run with reused decoders."""
    return (f"The decoders were not refitted: those trained in an earlier bids_recon run ({Path(folder).name}, "
            f"{Path(folder)}) on the same participant's betas were applied, with their training standardisation, to "
            "this run's betas, averaged over repeats, of every stimulus they had not been trained on.")


__all__ = ["STIMULUS_IDS_KEY", "Applied", "SourceSummary", "apply_decoder", "basis_path", "check_same_model",
           "check_same_roi", "check_same_voxels", "decodable_stimuli", "find_basis", "find_source_decoders",
           "methods_note", "model_signature", "read_sidecar", "same_stimulus_ids", "source_brain_mask",
           "source_record", "source_roi_mask", "source_trials", "stimulus_id_kind", "summarise_source",
           "training_stimuli"]
