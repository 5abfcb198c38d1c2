"""Settings of the ridge decoders (``[workflow.decoding]``): the one place their defaults live."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bids_recon.params import setting


@dataclass
class DecodingParams:
    """How decoders are fitted (see :func:`bids_recon.decoding.fit_ridge_decoder`)."""

    alphas: list[float] = setting(factory=lambda: [10.0**k for k in range(0, 9)], gt=0, min_items=1,
                                  doc="ridge penalties tried; the best is chosen per target by cross-validation")
    cv: str = setting("gcv", choices=("gcv", "loo", "kfold"), doc=(
        "how alpha is chosen per target: generalised ('gcv') or exact leave-one-out ('loo') cross-validation from "
        "one eigendecomposition, or cv_folds contiguous folds ('kfold', the paper's 5-fold)"))
    cv_folds: int = setting(5, ge=2, le=100, doc="contiguous cross-validation folds of the training trials "
                                                  "(cv = 'kfold' and solver = 'himalaya')")
    solver: str = setting("eigen", choices=("eigen", "himalaya"), doc=(
        "'eigen': bids_recon's eigenbasis ridge (one decomposition, targets in batches); 'himalaya': himalaya's "
        "RidgeCV / KernelRidgeCV with cv_folds folds, as Takagi & Nishimoto"))
    backend: str = setting("auto", choices=("auto", "numpy", "torch"), doc=(
        "array backend of the eigen solver (auto: torch on CUDA when the device is a GPU, else numpy)"))
    batch_size: int = setting(0, ge=0, doc="targets per batch of the eigen solver (0: about 128 MB per batch)")
    eigh_threads: int = setting(0, ge=0, doc=(
        "BLAS threads of the eigendecomposition (0: as the process; OpenBLAS is often faster with 1)"))
    decoders_from: str = setting("", doc=(
        "output folder of an earlier bids_recon run whose decoders of the same participant, ROIs and targets are "
        "applied instead of fitting new ones (empty: fit them); every stimulus they were not trained on is decoded"))

    def methods(self) -> str:
        """The sentence of the methods text that says how decoders were fitted."""
        span = f"{len(self.alphas)} values ({min(self.alphas):g} to {max(self.alphas):g})"
        if self.solver == "himalaya":
            how = f"{self.cv_folds}-fold contiguous cross-validation (himalaya RidgeCV)"
        else:
            how = {"gcv": "generalised cross-validation (Golub et al. 1979)", "loo": "exact leave-one-out "
                   "cross-validation", "kfold": f"{self.cv_folds}-fold contiguous cross-validation"}[self.cv]
            how += ", computed from one eigendecomposition of the training betas' Gram matrix"
        return ("ridge regression (inputs standardised with the training mean and sd) with alpha chosen per "
                f"target among {span} by {how}")


@dataclass
class SharedSpaceParams:
    """Decoders shared across subjects (``[workflow.shared]``; see :mod:`bids_recon.decoding.shared`)."""

    method: str = setting("none", choices=("none", "ridge", "srm"), doc=(
        "the group level's shared space across participants: 'none' (not built), 'srm' (shared response model: "
        "orthonormal maps, template by alternating Procrustes; the measured choice) or 'ridge' (a reference "
        "subject's principal components, other subjects mapped onto them by ridge)"))
    n_components: int = setting(128, ge=1, doc="dimensions of the shared space (at most the alignment stimuli - 1 "
                                               "and the fewest voxels of a reference subject)")
    reference: str = setting("", doc="the 'ridge' method's reference subject (empty: the one with the most voxels)")
    iterations: int = setting(10, ge=1, doc="alternations of the 'srm' fit")
    alphas: list[float] = setting(factory=lambda: [10.0**k for k in range(0, 9)], gt=0, min_items=1,
                                  doc="ridge penalties of the maps into the space (chosen per dimension by GCV)")
    new_subject_map: str = setting("encoding", choices=("encoding", "ridge"), doc=(
        "how a decoded subject is mapped into the space: 'encoding' (each voxel's weights on the space fitted on its "
        "trials, inverted: k numbers per voxel) or 'ridge' (ridge from its voxels to the space)"))
    remap_references: bool = setting(True, doc="map the reference subjects as the decoded one is (their own maps "
                                                "refitted on all their training trials) before training the decoder")
    new_subject_targets: str = setting("all", choices=("all", "alignment"), doc=(
        "what a decoded subject's map is fitted on: 'alignment' (its trials of the alignment stimuli, against the "
        "template) or 'all' (every training trial: the template, else the place its stimulus' features predict)"))
    combine_own: bool = setting(False, doc=(
        "average the shared-space prediction with the decoded subject's own decoder (each standardised by its "
        "predictions of the subject's training trials): one linear decoder of the subject's voxels"))
    align_test_fraction: float = setting(0.0, ge=0, lt=1, doc=(
        "fraction of the test stimuli every participant saw that become alignment (and training) stimuli for every "
        "row of the comparison, the rest being scored: for datasets whose shared images are the test set (NSD's "
        "shared1000); 0: none"))
    train_sessions: int = setting(0, ge=0, doc=(
        "sessions of a decoded subject used for its map and its training trials (0: all); its test stimuli are "
        "averaged over all of its sessions (the '1 hour of a new subject' protocol: 1)"))

#: Nulls of the encoding models' significance test.
ENCODING_NULLS = ("analytic", "permutation")


def _distinct_levels(levels: list[float]) -> str | None:
    names = [f"{round(100 * level)}" for level in levels]
    if len(set(names)) != len(names):
        return "levels must differ by at least 0.01 (each names a feature space zc<percent>)"
    return None


@dataclass
class EncodingParams:
    """Voxelwise encoding models (``[workflow.encoding]``): which voxels each stimulus feature space predicts.

    See :func:`bids_recon.decoding.encoding.encoding_analysis`. Which feature spaces exist depends on the
    generator (diffusion: ``z``, ``c`` and ``zc<percent>``, the U-Net's bottleneck features at each of
    ``zc_noise_levels``; linear: ``imagepca``).
    """

    enabled: str = setting("auto", choices=("auto", "on", "off"), doc=(
        "fit voxelwise encoding models; 'auto': on with the generators that ask for them (diffusion), off "
        "with the others (linear)"))
    features: list[str] = setting(factory=list, doc=(
        "feature spaces to model (empty: every one the generator offers: diffusion z, c and zc<percent> per "
        "zc_noise_levels; linear imagepca)"))
    zc_noise_levels: list[float] = setting(factory=lambda: [0.25, 0.5, 0.75], gt=0, lt=1, check=_distinct_levels,
                                           doc=("noise levels (fractions of the diffusion schedule) at which the "
                                                "U-Net bottleneck features z_c are taken (diffusion generator)"))
    partition: list[str] = setting(factory=list, doc=(
        "feature spaces whose unique variance a joint model partitions (empty: the generator's, z and c for "
        "diffusion; none with fewer than two spaces)"))
    partition_mixes: list[float] = setting(factory=lambda: [0.9], gt=0, lt=1, doc=(
        "banded ridge of the joint model by grid search: besides equal weights, each space weighted f (the others "
        "share 1 - f) for each f here, the best per voxel by the same CV; each weighting costs one more "
        "eigendecomposition ([]: equal weights only)"))
    mask: str = setting("visual", choices=("visual", "brain"), doc=(
        "voxels modelled: 'visual' = the union of the configured ROIs; 'brain' = the whole brain mask (read in "
        "blocks of voxels)"))
    alphas: list[float] = setting(factory=lambda: [10.0 ** (k / 2) for k in range(-4, 9)], gt=0, min_items=1,
                                  doc=("ridge penalties tried per voxel, in units of a kernel of mean eigenvalue 1 "
                                       "per feature space (default 10^-2..10^4, 13 values)"))
    cv: str = setting("gcv", choices=("gcv", "loo", "kfold"), doc=(
        "how alpha is chosen per voxel on the training stimuli (as [workflow.decoding] cv)"))
    cv_folds: int = setting(5, ge=2, le=100, doc="contiguous folds of the training stimuli (cv = 'kfold')")
    null: str = setting("analytic", choices=ENCODING_NULLS, doc=(
        "null of the one-sided test of r > 0: 'analytic' (independent Gaussian vectors, as Takagi & Nishimoto) or "
        "'permutation' (shuffled test stimuli, seeded by execution.random_seed)"))
    n_permutations: int = setting(1000, ge=1, doc="shuffles of the permutation null")
    fdr: float = setting(0.05, gt=0, lt=1, doc="Benjamini-Hochberg FDR level of the maps' significance")
    block_voxels: int = setting(0, ge=0, doc="voxels fitted at a time (0: 64 MB of training betas per block)")

    def runs(self, offered: Sequence[str], by_default: bool) -> bool:
        """Whether the encoding models run with a generator that offers the feature spaces ``offered``.

        ``enabled`` 'on' or 'off' decides; 'auto' runs them when the generator asks for them (``by_default``, its
        card's ``encoding_default``) and offers at least one space.
        """
        return self.enabled == "on" or (self.enabled == "auto" and by_default and bool(offered))
