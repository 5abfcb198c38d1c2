"""Decoders shared across subjects: a linear shared space learned from the stimuli several subjects saw.

A new subject with little data (one session, NSD's "1 hour") is decoded by decoders trained on every subject's
training trials in a space common to all, into which each subject's voxels are mapped linearly:

1. **Template.** From the *alignment stimuli* (training stimuli every reference subject saw, NSD's shared images
   outside the test set), each reference subject ``s`` gives ``X_s`` (n_align, V_s): its repeat-averaged betas
   of those stimuli (z-scored per session, ROI voxels, centred). Two templates ``T`` (n_align, k) and reference
   maps ``M_s`` (V_s, k) are offered:

   - ``ridge`` (alignment to a reference subject, as Ferrante et al. 2024 "Through their eyes"): ``T`` = the
     reference subject's first ``k`` principal components of ``X_ref``; every other subject's ``M_s`` is a ridge
     regression from ``X_s`` onto ``T`` (alpha per dimension by generalised cross-validation);
   - ``srm`` (the deterministic shared response model, Chen et al. 2015, as Haxby's hyperalignment): orthonormal
     ``W_s`` (V_s, k) and ``T`` minimising ``sum_s ||X_s - T W_s'||²``, by alternating orthogonal Procrustes
     (``W_s = U V'`` of the SVD of ``X_s' T``) and averaging (``T = mean_s X_s W_s``), from the PCA of the
     subjects' concatenated responses; ``M_s = W_s``.

2. **New subject.** Its map ``M_new`` is a ridge regression from its own single trials of alignment stimuli (as
   few as one session holds; every trial against its stimulus' template row) onto ``T``: a least-squares map that
   needs no repeats and no more stimuli than dimensions (Procrustes would need ``V_new >= k`` and well-estimated
   repeat averages).

3. **Decoders.** One ridge decoder (:func:`bids_recon.decoding.fit_ridge_decoder`) from the shared space to the
   features, trained on the single training trials of every reference subject and of the new subject, all mapped
   into the space; the new subject's test stimuli (repeat-averaged over all its sessions) are mapped and decoded.

Which template serves by default was chosen by measurement (``benchmarks/bench_shared_space.py``,
docs/benchmarks.md "Decoders shared across subjects").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bids_recon.decoding.params import DecodingParams, SharedSpaceParams
from bids_recon.decoding.ridge import DecodedTest, RidgeDecoder, average_repeats, fit_ridge_decoder
from bids_recon.errors import BadDataError, UsageError
from bids_recon.invariants import check_finite

#: Template kinds (:class:`SharedSpaceParams` ``method``).
SHARED_METHODS = ("ridge", "srm")
#: Fewest alignment stimuli a template is fitted from.
MIN_ALIGNMENT_STIMULI = 10


@dataclass
class SubjectData:
    """One subject's ROI betas for shared-space decoding.

    Attributes
    ----------
    subject : str
    betas : ndarray, shape (n_trials, n_voxels)
        Single-trial betas of the ROI's voxels, z-scored per session.
    trials : pandas.DataFrame
        One row per beta row: ``stim_id``, ``split`` (``train``/``test``; other values are not used) and
        ``session``.
    """

    subject: str
    betas: np.ndarray
    trials: pd.DataFrame

    def __post_init__(self) -> None:
        if len(self.betas) != len(self.trials):
            raise BadDataError(f"sub-{self.subject}: {len(self.betas)} beta rows but {len(self.trials)} trials")
        missing = {"stim_id", "split", "session"} - set(self.trials.columns)
        if missing:
            raise BadDataError(f"sub-{self.subject}: the trial table lacks {sorted(missing)}")
        check_finite(self.betas, f"sub-{self.subject}'s ROI betas")

    @property
    def stim_ids(self) -> np.ndarray:
        return self.trials["stim_id"].astype(str).to_numpy()

    def rows(self, split: str) -> np.ndarray:
        return (self.trials["split"].astype(str) == split).to_numpy()

    def first_sessions(self, n_sessions: int | None) -> SubjectData:
        """The trials of the first ``n_sessions`` sessions (in the table's order); all when ``None`` or 0."""
        if not n_sessions:
            return self
        sessions = list(dict.fromkeys(self.trials["session"].astype(str)))
        if n_sessions > len(sessions):
            raise UsageError(f"sub-{self.subject} has {len(sessions)} sessions, not {n_sessions}")
        keep = self.trials["session"].astype(str).isin(sessions[:n_sessions]).to_numpy()
        return SubjectData(self.subject, self.betas[keep], self.trials[keep].reset_index(drop=True))


@dataclass
class SharedSpace:
    """A shared space: the template over the alignment stimuli and each subject's linear map into it.

    Attributes
    ----------
    method : str
        ``ridge`` or ``srm``.
    align_ids : ndarray of str, shape (n_align,)
        The alignment stimuli, rows of ``template``.
    template : ndarray, shape (n_align, k)
    maps : dict of str -> RidgeDecoder
        Per subject, ``x -> ((x - mean) / scale) @ weights + offset`` into the space (a :class:`RidgeDecoder`
        whose voxel indices are the ROI columns it was given).
    info : dict
        Provenance: reference subject, components, per-map alignment fit.
    """

    method: str
    align_ids: np.ndarray
    template: np.ndarray
    maps: dict[str, RidgeDecoder]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_components(self) -> int:
        return int(self.template.shape[1])

    def transform(self, subject: str, betas: np.ndarray) -> np.ndarray:
        """Map ``(n, V_subject)`` betas of ``subject`` into the space: ``(n, k)``."""
        if subject not in self.maps:
            raise UsageError(f"sub-{subject} has no map into the shared space (mapped: {', '.join(self.maps)})")
        return self.maps[subject].predict(np.asarray(betas, dtype=np.float32))

    def add_subject(self, data: SubjectData, alphas: list[float] | None = None, *,
                    encoder: RidgeDecoder | None = None, stim_ids: np.ndarray | None = None,
                    features: np.ndarray | None = None, map_kind: str = "encoding") -> SharedSpace:
        """Fit ``data``'s map onto the template from its single training trials: ``map_kind`` ``encoding`` (a forward
        model inverted, :func:`_encoding_map`) or ``ridge`` (voxels -> space).

        Without ``encoder``, only the trials of alignment stimuli are used (each against its template row). With
        ``encoder`` (features -> space, :func:`_feature_encoder`) and the features of ``stim_ids``, every training
        trial is used: the template row where the stimulus is an alignment stimulus, else the encoder's prediction
        from the stimulus' features.

        Raises
        ------
        BadDataError
            Fewer than :data:`MIN_ALIGNMENT_STIMULI` alignment stimuli among the subject's trials.
        """
        row_of = {s: i for i, s in enumerate(self.align_ids)}
        ids = data.stim_ids
        aligned = data.rows("train") & np.isin(ids, self.align_ids)
        n_stim = len(set(ids[aligned]))
        if n_stim < MIN_ALIGNMENT_STIMULI:
            raise BadDataError(
                f"sub-{data.subject} saw {n_stim} of the {len(self.align_ids)} alignment stimuli in its training "
                f"trials: at least {MIN_ALIGNMENT_STIMULI} are needed to map it into the shared space")
        if encoder is None:
            use = aligned
            targets, target_rows = self.template, np.array([row_of[s] for s in ids[use]], dtype=np.int64)
        else:
            use = data.rows("train")
            feature_row = {s: i for i, s in enumerate(np.asarray(stim_ids).astype(str))}
            others = sorted(set(ids[use]) - set(self.align_ids))
            predicted = encoder.predict(np.asarray(features)[[feature_row[s] for s in others]]) if others else \
                np.zeros((0, self.n_components), np.float32)
            targets = np.concatenate([self.template, predicted])
            row_of.update({s: len(self.align_ids) + i for i, s in enumerate(others)})
            target_rows = np.array([row_of[s] for s in ids[use]], dtype=np.int64)
        if map_kind == "encoding":
            mapping = _encoding_map(data.betas[use], targets[target_rows], self.template)
        else:
            mapping = _ridge_map(data.betas[use], targets, target_rows, alphas)
        info = dict(self.info)
        info.setdefault("NewSubjects", {})[data.subject] = {"MapTrials": int(use.sum()),
                                                            "AlignmentTrials": int(aligned.sum()),
                                                            "AlignmentStimuli": n_stim}
        return SharedSpace(self.method, self.align_ids, self.template, {**self.maps, data.subject: mapping}, info)


def _feature_rows(data: SubjectData, use: np.ndarray, row_of: dict[str, int]) -> np.ndarray:
    """Rows of the features of ``data``'s trials ``use`` (BadDataError naming the stimuli without features)."""
    ids = data.stim_ids[use]
    unknown = sorted(set(ids) - set(row_of))
    if unknown:
        raise BadDataError(f"sub-{data.subject}: no features for stimuli {unknown[:5]}")
    return np.array([row_of[s] for s in ids], dtype=np.int64)


def _own_decoder(data: SubjectData, features: np.ndarray, row_of: dict[str, int],
                 decoding: DecodingParams | None) -> RidgeDecoder:
    """The subject's own ridge decoder from its training trials (columns: all of ``data``'s voxels)."""
    train = data.rows("train")
    return fit_ridge_decoder(data.betas[train], features, np.arange(data.betas.shape[1]), decoding,
                             target_rows=_feature_rows(data, train, row_of))


def _combine_with_own(shared_test: np.ndarray, test_betas: np.ndarray, data: SubjectData, space: SharedSpace,
                      decoder: RidgeDecoder, features: np.ndarray, row_of: dict[str, int],
                      decoding: DecodingParams | None) -> np.ndarray:
    """The mean of the shared-space and the subject's own predictions, each standardised per target by its
    predictions of the subject's training trials (no test statistic), in the features' units again.

    Both are linear in the subject's voxels, so the result is one linear decoder of them; the two err partly
    independently (the own decoder keeps what is specific to the subject, the shared one what many subjects
    estimate better).
    """
    train = data.rows("train")
    own = _own_decoder(data, features, row_of, decoding)
    own_train = own.predict(data.betas[train])
    shared_train = decoder.predict(space.transform(data.subject, data.betas[train]))
    own_mean, own_sd = own_train.mean(axis=0), own_train.std(axis=0)
    shared_mean, shared_sd = shared_train.mean(axis=0), shared_train.std(axis=0)
    scale = (own_sd + shared_sd) / 2
    own_sd, shared_sd = np.where(own_sd > 0, own_sd, 1.0), np.where(shared_sd > 0, shared_sd, 1.0)
    combined = ((own.predict(test_betas) - own_mean) / own_sd + (shared_test - shared_mean) / shared_sd) / 2
    return (combined * scale + (own_mean + shared_mean) / 2).astype(np.float32)


def _feature_encoder(space: SharedSpace, references: list[SubjectData], features: np.ndarray,
                     row_of: dict[str, int], decoding: DecodingParams | None) -> RidgeDecoder:
    """Ridge from a stimulus' features to its place in the shared space, fitted on the reference subjects'
    training trials mapped into the space (the template of stimuli only some subjects saw)."""
    blocks, rows = [], []
    for data in references:
        use = data.rows("train")
        blocks.append(space.transform(data.subject, data.betas[use]))
        rows.append(_feature_rows(data, use, row_of))
    mapped, trial_rows = np.concatenate(blocks), np.concatenate(rows)
    return fit_ridge_decoder(np.asarray(features)[trial_rows], mapped, np.arange(features.shape[1]), decoding)


def _encoding_map(x: np.ndarray, y: np.ndarray, template: np.ndarray) -> RidgeDecoder:
    """The map into the space by inverting a forward model fitted on the subject's trials.

    Each voxel's weights on the ``k`` dimensions, ``W`` (k, V), by ridge regression from the trials' places in the
    space ``y`` (n, k) to their betas ``x`` (n, V), alpha per voxel by generalised cross-validation: ``k`` numbers
    per voxel, far fewer than the ``V`` per dimension a ridge from voxels to the space estimates. With each voxel's
    residual variance ``s²`` (its variance times 1 - its cross-validated R²) and the template's covariance ``C`` as
    the prior, a trial's place is the posterior mean ``(W S⁻¹ W' + C⁻¹)⁻¹ W S⁻¹ (x - x̄)`` (Gaussian noise
    independent across voxels).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x_mean = x.mean(axis=0)
    k = y.shape[1]
    forward = fit_ridge_decoder(y.astype(np.float32), x.astype(np.float32), np.arange(k))
    weights = np.asarray(forward.weights, dtype=np.float64) / np.asarray(forward.x_scale, np.float64)[:, None]
    r2 = np.clip(np.asarray(forward.cv_scores, dtype=np.float64), 0.0, 0.99)
    residual = x.var(axis=0) * (1.0 - r2)
    residual = np.maximum(residual, 1e-6 * max(float(residual.max()), 1e-12))
    prior = np.cov(np.asarray(template, dtype=np.float64), rowvar=False).reshape(k, k)
    precision = (weights / residual) @ weights.T + np.linalg.inv(prior + 1e-9 * np.trace(prior) / k * np.eye(k))
    matrix = np.linalg.solve(precision, weights / residual).T  # (V, k)
    n_vox = x.shape[1]
    return RidgeDecoder(weights=matrix.astype(np.float32), alphas=np.zeros(k), cv_scores=np.zeros(k, np.float32),
                        x_mean=x_mean.astype(np.float32), x_scale=np.ones(n_vox, np.float32),
                        y_mean=np.asarray(forward.x_mean, dtype=np.float32), voxel_indices=np.arange(n_vox),
                        info={"Map": "forward-model inversion", "Trials": int(len(x)),
                              "MedianForwardCVR2": float(np.median(r2))})


def _ridge_map(x: np.ndarray, template: np.ndarray, target_rows: np.ndarray | None,
               alphas: list[float] | None) -> RidgeDecoder:
    params = DecodingParams(alphas=list(alphas) if alphas else DecodingParams().alphas)
    return fit_ridge_decoder(np.asarray(x, dtype=np.float32), template.astype(np.float32),
                             np.arange(x.shape[1]), params, target_rows=target_rows)


def _linear_map(weights: np.ndarray, mean: np.ndarray) -> RidgeDecoder:
    """A fixed map ``(x - mean) @ weights`` as a :class:`RidgeDecoder` (scale 1, offset 0)."""
    n_vox, k = weights.shape
    return RidgeDecoder(weights=weights.astype(np.float32), alphas=np.zeros(k), cv_scores=np.zeros(k, np.float32),
                        x_mean=mean.astype(np.float32), x_scale=np.ones(n_vox, np.float32),
                        y_mean=np.zeros(k, np.float32), voxel_indices=np.arange(n_vox), info={"Map": "orthonormal"})


def alignment_stimuli(subjects: list[SubjectData]) -> np.ndarray:
    """Training-split stimuli every one of ``subjects`` saw, sorted (the shared images outside the test set)."""
    common: set[str] | None = None
    for data in subjects:
        seen = set(data.stim_ids[data.rows("train")])
        common = seen if common is None else common & seen
    return np.array(sorted(common or ()), dtype=str)


def stimulus_means(data: SubjectData, stim_ids: np.ndarray, split: str = "train") -> np.ndarray:
    """``(len(stim_ids), V)`` repeat-averaged betas of ``stim_ids`` (rows in that order) from ``split`` trials."""
    use = data.rows(split) & np.isin(data.stim_ids, stim_ids)
    means, ids, _ = average_repeats(data.betas[use], data.stim_ids[use])
    position = {s: i for i, s in enumerate(ids)}
    missing = [s for s in stim_ids if s not in position]
    if missing:
        raise BadDataError(f"sub-{data.subject} has no {split} trials of stimuli {missing[:5]}")
    return means[[position[s] for s in stim_ids]]


def fit_shared_space(references: list[SubjectData], params: SharedSpaceParams | None = None) -> SharedSpace:
    """Fit the template and the reference subjects' maps from their alignment stimuli.

    Parameters
    ----------
    references : list of SubjectData
        The subjects whose data define the space (two at least; each with the ROI's voxels, any count).
    params : SharedSpaceParams, optional
        ``method`` (``ridge``/``srm``), ``n_components`` (k), ``reference`` (the ``ridge`` template's subject;
        empty: the subject with the most voxels), ``iterations`` (``srm``), ``alphas`` (ridge maps).
    """
    params = params or SharedSpaceParams(method="srm")
    if params.method not in SHARED_METHODS:
        raise UsageError(f"shared-space method must be one of {', '.join(SHARED_METHODS)}, not {params.method!r}")
    if len(references) < 2:
        raise UsageError(f"a shared space needs at least 2 reference subjects, got {len(references)}")
    align_ids = alignment_stimuli(references)
    if len(align_ids) < MIN_ALIGNMENT_STIMULI:
        raise BadDataError(
            f"sub-{', sub-'.join(d.subject for d in references)} share {len(align_ids)} training stimuli: at least "
            f"{MIN_ALIGNMENT_STIMULI} are needed to align them (test stimuli are never used for alignment)")
    responses = {d.subject: stimulus_means(d, align_ids) for d in references}
    k = min(params.n_components, len(align_ids) - 1, *(r.shape[1] for r in responses.values()))
    info: dict[str, Any] = {"Method": params.method, "Components": int(k), "AlignmentStimuli": int(len(align_ids)),
                            "References": [d.subject for d in references]}
    if params.method == "ridge":
        reference = params.reference or max(responses, key=lambda s: responses[s].shape[1])
        if reference not in responses:
            raise UsageError(f"reference subject {reference!r} is not among the references "
                             f"({', '.join(responses)})")
        x = responses[reference]
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        weights = vt[:k].T  # (V_ref, k) principal axes
        template = (x - mean) @ weights
        maps = {reference: _linear_map(weights, mean)}
        for data in references:
            if data.subject != reference:
                maps[data.subject] = _ridge_map(responses[data.subject], template, None, params.alphas)
        info["Reference"] = reference
    else:
        template, orthonormal, means = _srm(responses, k, params.iterations)
        maps = {s: _linear_map(orthonormal[s], means[s]) for s in responses}
    check_finite(template, "shared-space template")
    return SharedSpace(params.method, align_ids, template.astype(np.float32), maps, info)


def _srm(responses: dict[str, np.ndarray], k: int, iterations: int) -> tuple[np.ndarray, dict, dict]:
    """Deterministic SRM: orthonormal ``W_s`` (V_s, k) and template (n, k) by alternating Procrustes."""
    means = {s: x.mean(axis=0) for s, x in responses.items()}
    centred = {s: x - means[s] for s, x in responses.items()}
    u, sv, _ = np.linalg.svd(np.concatenate(list(centred.values()), axis=1), full_matrices=False)
    template = u[:, :k] * sv[:k] / np.sqrt(len(centred))
    weights: dict[str, np.ndarray] = {}
    for _ in range(max(1, iterations)):
        for s, x in centred.items():
            a, _, bt = np.linalg.svd(x.T @ template, full_matrices=False)
            weights[s] = a @ bt
        template = np.mean([centred[s] @ weights[s] for s in centred], axis=0)
    return template, weights, means


def shared_space_decode(
    references: list[SubjectData],
    new: SubjectData,
    stim_ids: np.ndarray,
    features: np.ndarray,
    params: SharedSpaceParams | None = None,
    decoding: DecodingParams | None = None,
    train_sessions: int | None = None,
) -> tuple[DecodedTest, SharedSpace, RidgeDecoder]:
    """Decode ``new``'s test stimuli with decoders trained in a shared space on every subject's training trials.

    Parameters
    ----------
    references : list of SubjectData
        Subjects that define the space (all their sessions); their training trials train the decoder.
    new : SubjectData
        The subject decoded; its map and its share of the training use only its first ``train_sessions``
        sessions, its test stimuli are averaged over all of its sessions' test trials.
    stim_ids : ndarray of str, shape (n_stimuli,)
    features : ndarray, shape (n_stimuli, n_targets)
        The decoded feature space of every stimulus any subject saw.
    params, decoding : SharedSpaceParams, DecodingParams
    train_sessions : int, optional
        Sessions of ``new`` used for its map and training (None/0: all).

    Returns
    -------
    decoded : DecodedTest
        ``new``'s test stimuli, decoded and true.
    space : SharedSpace
        With ``new``'s map added.
    decoder : RidgeDecoder
        The shared decoder (voxel indices: the space's dimensions).
    """
    params = params or SharedSpaceParams(method="srm")
    stim_ids = np.asarray(stim_ids).astype(str)
    check_finite(features, "decoding targets")
    row_of = {s: i for i, s in enumerate(stim_ids)}
    for data in references:  # every stimulus trained on or decoded has features, before any fit
        _feature_rows(data, data.rows("train"), row_of)
    _feature_rows(new, new.rows("train") | new.rows("test"), row_of)
    space = fit_shared_space(references, params)
    train_part = new.first_sessions(train_sessions)
    how = {"alphas": params.alphas, "map_kind": params.new_subject_map}
    if params.new_subject_targets == "all":  # every training trial: the template where it has the stimulus, else
        encoder = _feature_encoder(space, references, features, row_of, decoding)  # where its features predict
        how.update(encoder=encoder, stim_ids=stim_ids, features=features)
        if params.remap_references:
            for data in references:
                space = space.add_subject(data, **how)
    space = space.add_subject(train_part, **how)
    blocks, rows = [], []
    for data in [*references, train_part]:
        use = data.rows("train")
        blocks.append(space.transform(data.subject, data.betas[use]))
        rows.append(_feature_rows(data, use, row_of))
    shared = np.concatenate(blocks)
    check_finite(shared, "training trials mapped into the shared space")
    decoder = fit_ridge_decoder(shared, features, np.arange(shared.shape[1]), decoding,
                                target_rows=np.concatenate(rows))
    test = new.rows("test")
    if not test.any():
        raise BadDataError(f"sub-{new.subject} has no test trials to decode")
    means, test_ids, counts = average_repeats(new.betas[test], new.stim_ids[test])
    decoded = decoder.predict(space.transform(new.subject, means))
    if params.combine_own:  # with the subject's own decoder (same trials): one linear decoder of its voxels
        decoded = _combine_with_own(decoded, means, train_part, space, decoder, features, row_of, decoding)
    check_finite(decoded, "decoded test features (shared space)")
    true = np.asarray(features[[row_of[s] for s in test_ids]], dtype=np.float32)
    return DecodedTest(test_ids.astype(str), counts, decoded, true), space, decoder


def subject_decode(
    data: SubjectData,
    stim_ids: np.ndarray,
    features: np.ndarray,
    decoding: DecodingParams | None = None,
    train_sessions: int | None = None,
) -> DecodedTest:
    """The subject's own decoder, trained on its first ``train_sessions`` sessions (None/0: all), tested on the
    test stimuli of all its sessions: the baseline a shared space must beat."""
    row_of = {s: i for i, s in enumerate(np.asarray(stim_ids).astype(str))}
    test = data.rows("test")
    _feature_rows(data, test, row_of)
    decoder = _own_decoder(data.first_sessions(train_sessions), features, row_of, decoding)
    means, test_ids, counts = average_repeats(data.betas[test], data.stim_ids[test])
    decoded = decoder.predict(means)
    check_finite(decoded, f"sub-{data.subject}'s decoded test features")
    true = np.asarray(features[[row_of[s] for s in test_ids]], dtype=np.float32)
    return DecodedTest(test_ids.astype(str), counts, decoded, true)


__all__ = ["MIN_ALIGNMENT_STIMULI", "SHARED_METHODS", "SharedSpace", "SubjectData", "alignment_stimuli",
           "fit_shared_space", "shared_space_decode", "stimulus_means", "subject_decode"]
