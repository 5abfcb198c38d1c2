"""Group level: decoders shared across the participants of a derivatives dataset (``group --shared-space``).

Each participant in turn is the *decoded* subject; the others define the shared space
(:mod:`bids_recon.decoding.shared`). Inputs are the participant level's outputs: the single-trial betas
(statmaps, z-scored here per session as the participant level does), the trial table beside them (``stim_id``,
``split``, ``session``), the brain mask and the ROI masks. The decoded feature space is the images' PCA (the
linear generator's ``imagepca`` target, refitted here on the training images of all participants so that every
subject decodes the same targets): model-free, so the comparison holds for any generator the participants ran.

For every participant the table holds (2-way identification of the test stimuli in the PCA space, chance 0.5): its
own decoders trained on all its sessions, on its first ``train_sessions`` sessions (when fewer than it has), and
the shared-space decoders with its first ``train_sessions`` sessions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.decoding.params import DecodingParams, SharedSpaceParams
from bids_recon.decoding.shared import SubjectData, shared_space_decode, subject_decode
from bids_recon.design.table import read_trials
from bids_recon.errors import BadDataError, EmptySelectionError, MissingInputError
from bids_recon.evaluate.metrics import two_way_identification
from bids_recon.glm import zscore_by_group
from bids_recon.naming import find_outputs, split_extension

LOGGER = logging.getLogger("bids_recon.group")

#: Published results with about one hour (one NSD session) of a new subject's data, shown beside ours. Different
#: data and protocol unless the run is NSD with the shared1000 test split (and even then: deep models, not ridge).
PUBLISHED_ONE_HOUR = (
    {"source": "MindEye2 (Scotti et al. 2024), 1 session of a new subject, mean of 4 subjects, NSD shared1000",
     "metric": "CLIP 2-way", "value": 0.792},
    {"source": "MindEye2 (Scotti et al. 2024), 1 session", "metric": "image retrieval (top-1 of 300)",
     "value": 0.790},
    {"source": "MindEye2 (Scotti et al. 2024), 1 session", "metric": "brain retrieval (top-1 of 300)",
     "value": 0.574},
    {"source": "Brain-IT (ICLR 2026), 1 hour", "metric": "AlexNet(2) 2-way", "value": 0.971},
)


def read_participant_betas(output_dir: Path, subject: str) -> tuple[np.ndarray, pd.DataFrame, nib.Nifti1Image]:
    """A participant's single-trial betas as the participant level wrote them (statmaps, before z-scoring).

    Returns
    -------
    betas : ndarray, shape (n_trials, n_brain_voxels), float32
        In the statmaps' order (session, run, volume), the brain mask's voxels in C order.
    trials : pandas.DataFrame
        The statmaps' volume tables, concatenated (one row per beta row).
    mask : nibabel image
        The brain mask.
    """
    runs = find_outputs(Path(output_dir), "betas", sub=subject)
    masks = find_outputs(Path(output_dir), "brain_mask", sub=subject)
    if not runs or not masks:
        raise MissingInputError(f"no single-trial betas or brain mask of sub-{subject}", output_dir)
    mask_img = nib.load(masks[0][0])
    mask = np.asarray(mask_img.dataobj) > 0
    blocks, tables = [], []
    for path, _ in sorted(runs, key=lambda item: (item[1].get("ses", ""), item[1].get("run", ""))):
        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        blocks.append(data[mask].T)
        tables.append(read_trials(path.with_name(split_extension(path.name)[0] + ".tsv")))
        if len(tables[-1]) != len(blocks[-1]):
            raise BadDataError(f"{len(blocks[-1])} volumes but {len(tables[-1])} rows in the table beside them", path)
    return np.concatenate(blocks), pd.concat(tables, ignore_index=True), mask_img


def reimport_participant_betas(output_dir: Path, subject: str, betas_spec: str, context,
                               scratch: Path) -> tuple[np.ndarray, pd.DataFrame, nib.Nifti1Image]:
    """A participant's imported betas (``--betas FORMAT=PATH``: not copied into the outputs) read again from their
    source, in the voxels of its output brain mask and the rows of its output trial table (whose split they keep).

    Raises
    ------
    BadDataError
        The source's trials differ from the output trial table (count or stimuli).
    """
    from bids_recon.glm.importers.steps import import_session

    tables = find_outputs(Path(output_dir), "trials", sub=subject)
    masks = find_outputs(Path(output_dir), "brain_mask", sub=subject)
    if not tables or not masks:
        raise MissingInputError(f"no trial table or brain mask of sub-{subject}", output_dir)
    trials = read_trials(tables[0][0])
    mask_img = nib.load(masks[0][0])
    blocks = []
    for session in pd.unique(trials["session"].astype(str)):
        stacked, found, _ = import_session(betas_spec, subject, session, mask_img, context,
                                           Path(scratch) / f"sub-{subject}_ses-{session}.npy")
        blocks.append(np.array(stacked, dtype=np.float32))  # a copy: the memory map is deleted after
        rows = trials[trials["session"].astype(str) == session]
        if len(found) != len(rows) or list(found["stim_id"].astype(str)) != list(rows["stim_id"].astype(str)):
            raise BadDataError(f"sub-{subject} session {session}: the betas of {betas_spec} list {len(found)} "
                               f"trials, not the {len(rows)} of the output trial table", tables[0][0])
    return np.concatenate(blocks), trials, mask_img


def participant_roi_data(output_dir: Path, subject: str, roi: str, betas_spec: str = "", context=None,
                         scratch: Path | None = None) -> SubjectData:
    """A participant's z-scored betas of one ROI's voxels with its trial table, from its outputs (imported betas,
    ``betas_spec``, read again from their source)."""
    from bids_recon.rois import roi_columns

    if betas_spec and betas_spec.strip().lower() != "none" and not find_outputs(Path(output_dir), "betas",
                                                                                  sub=subject):
        betas, trials, mask_img = reimport_participant_betas(output_dir, subject, betas_spec, context, scratch)
    else:
        betas, trials, mask_img = read_participant_betas(output_dir, subject)
    rois = find_outputs(Path(output_dir), "roi_mask", sub=subject, label=roi)
    if not rois:
        raise MissingInputError(f"no '{roi}' ROI mask of sub-{subject}", output_dir)
    columns = roi_columns(mask_img, nib.load(rois[0][0]))
    return SubjectData(subject, zscore_by_group(betas[:, columns], trials["session"].to_numpy()), trials)


def move_test_to_alignment(subjects: list[SubjectData], fraction: float, seed: int) -> list[SubjectData]:
    """A random ``fraction`` of the test stimuli every subject saw become training stimuli of every subject (they
    align the space and train the decoders; the others stay the test set)."""
    if fraction <= 0:
        return subjects
    common = sorted(set.intersection(*(set(d.stim_ids[d.rows("test")]) for d in subjects)))
    chosen = set(np.random.default_rng(seed).permutation(common)[:int(round(fraction * len(common)))])
    out = []
    for data in subjects:
        trials = data.trials.copy()
        trials.loc[trials["stim_id"].astype(str).isin(chosen), "split"] = "train"
        out.append(SubjectData(data.subject, data.betas, trials))
    LOGGER.info("Shared space: %d of the %d test stimuli every participant saw moved to alignment and training",
                len(chosen), len(common))
    return out


def require_three(n_participants: int, output_dir: Path) -> None:
    """Exit 18 unless there are 3 participants (2 define the space for the third)."""
    if n_participants < 3:
        raise EmptySelectionError(f"a shared space across participants needs 3 participants with outputs (2 define "
                                  f"the space for the third), found {n_participants}", output_dir)


def shared_space_table(output_dir: Path, subjects: list[SubjectData], stim_ids: np.ndarray, features: np.ndarray,
                       params: SharedSpaceParams, decoding: DecodingParams | None = None) -> pd.DataFrame:
    """Identification of every participant's test stimuli: own decoders vs the shared space (one row each)."""
    require_three(len(subjects), output_dir)
    rows = []
    n_train = params.train_sessions or None
    for new in subjects:
        references = [d for d in subjects if d is not new]
        n_sessions = new.trials["session"].astype(str).nunique()
        used = min(n_train or n_sessions, n_sessions)
        results = {"own decoders, all sessions": (n_sessions, subject_decode(new, stim_ids, features, decoding))}
        if used < n_sessions:  # the one-hour protocol: its own decoders with the same sessions as its map
            results["own decoders, first sessions"] = (used, subject_decode(new, stim_ids, features, decoding, used))
        decoded, space, _ = shared_space_decode(references, new, stim_ids, features, params, decoding, used)
        results[f"shared space ({params.method}), first sessions"] = (used, decoded)
        for method, (sessions, result) in results.items():
            rows.append({"participant_id": f"sub-{new.subject}", "method": method, "sessions": sessions,
                         "of_sessions": n_sessions, "metric": "2-way identification (image PCA)",
                         "value": float(two_way_identification(result.decoded, result.true).mean()), "chance": 0.5,
                         "n": int(len(result.stim_ids)), "references": " ".join(f"sub-{d.subject}" for d in references),
                         "alignment_stimuli": int(space.info["AlignmentStimuli"]),
                         "components": int(space.n_components)})
    return pd.DataFrame(rows)


def run_shared_space(config, output_dir: Path, participants: list[str] | None) -> tuple[Path, pd.DataFrame]:
    """The group level's shared-space comparison of a run's configuration: the table written to
    ``group/task-<task>_desc-sharedspace_metrics.tsv`` (+ JSON sidecar); returns its path and the table."""
    import tempfile

    from bids_recon.features import resolver_for
    from bids_recon.generate.linear import LinearParams
    from bids_recon.glm.importers import ImportContext
    from bids_recon.io import write_json, write_tsv
    from bids_recon.naming import group_metrics_path

    wf = config.workflow
    params: SharedSpaceParams = wf.shared
    linear: LinearParams = wf.generate.linear
    wanted = {p.removeprefix("sub-") for p in participants or []}
    found = sorted({e["sub"] for _, e in find_outputs(output_dir, "trials")})
    subjects_found = [s for s in found if not wanted or s in wanted]
    require_three(len(subjects_found), output_dir)  # before any betas are read
    tasks = sorted({e.get("task", "") for _, e in find_outputs(output_dir, "trials")})
    context = ImportContext(Path(config.execution.bids_dir), wf.stimuli, config.execution.task_id or None)
    scratch_root = Path(output_dir) / "logs"
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix=".shared-") as scratch:
        subjects = [participant_roi_data(output_dir, s, linear.roi, wf.glm.betas or "", context, Path(scratch))
                    for s in subjects_found]
    resolver = resolver_for(config.execution.bids_dir, wf.stimuli)
    stim_ids, features = image_pca_targets(resolver.load_images, subjects, linear.n_components, linear.image_size,
                                           config.execution.random_seed)
    subjects = move_test_to_alignment(subjects, params.align_test_fraction, config.execution.random_seed)
    table = shared_space_table(output_dir, subjects, stim_ids, features, params, wf.decoding)
    task = tasks[0] if len(tasks) == 1 else "+".join(tasks)
    path = Path(output_dir) / group_metrics_path(task)
    path = path.with_name(path.name.replace("_metrics", "_desc-sharedspace_metrics"))
    write_tsv(path, table)
    write_json(path.with_suffix(".json"), {
        "Description": "2-way identification of each participant's test stimuli in the images' PCA space "
                       "(chance 0.5): own decoders vs decoders shared across participants",
        "SharedSpace": {"Method": params.method, "Components": params.n_components,
                        "TrainSessions": params.train_sessions, "AlignTestFraction": params.align_test_fraction,
                        "NewSubjectMap": params.new_subject_map,
                        "NewSubjectTargets": params.new_subject_targets, "RemapReferences": params.remap_references},
        "ROI": linear.roi, "Target": f"{linear.n_components}-component PCA of the images at {linear.image_size} px",
        "PublishedOneHour": list(PUBLISHED_ONE_HOUR),
        "PublishedComparison": "different data, metrics and models: the published rows use NSD (shared1000 test "
                               "images) and deep decoders; shown for scale only"})
    LOGGER.info("Group: shared space (%s) over %d participants: %s", params.method, len(subjects), path)
    return path, table


def image_pca_targets(images_of, subjects: list[SubjectData], n_components: int, image_size: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA coefficients of every stimulus any participant saw, the basis fitted on their training images.

    ``images_of(stim_ids, size)`` returns ``(n, size, size, 3)`` images (a stimulus resolver's ``load_images``).
    """
    from bids_recon.features import fit_image_basis

    stim_ids = np.array(sorted(set().union(*(set(d.stim_ids) for d in subjects))), dtype=str)
    train_ids = sorted(set().union(*(set(d.stim_ids[d.rows("train")]) for d in subjects)))
    images = images_of(list(stim_ids), image_size)
    position = {s: i for i, s in enumerate(stim_ids)}
    basis = fit_image_basis(images[[position[s] for s in train_ids]], n_components, seed)
    return stim_ids, basis.encode(images).astype(np.float32)


__all__ = ["PUBLISHED_ONE_HOUR", "image_pca_targets", "move_test_to_alignment", "participant_roi_data",
           "read_participant_betas", "require_three", "run_shared_space", "shared_space_table"]
