"""Settings of the ridge decoders (``[workflow.decoding]``): the one place their defaults live."""

from __future__ import annotations

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
