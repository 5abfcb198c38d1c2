"""Our vectorised fractional ridge against the fracridge package, one run's design and many voxels.

    OMP_NUM_THREADS=1 python benchmarks/bench_fracridge.py

Design: 183 volumes x 60 HRF-convolved trial regressors (SOA 4 s, TR 1.5 s, the collinearity of real
single-trial designs); 20,000 voxels of noise; the 20 fractions 1.0..0.05 that bids_recon tries.
"""

from __future__ import annotations

import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from bids_recon.glm.estimators.stages.ridge import DEFAULT_FRACTIONS, FractionalRidge  # noqa: E402
from bids_recon.glm.hrf import canonical_library, trial_regressors  # noqa: E402


def main() -> None:
    import fracridge

    rng = np.random.default_rng(0)
    onsets = 6.0 + 4.0 * np.arange(60)
    design = trial_regressors(canonical_library(), onsets, np.full(60, 3.0), np.arange(183) * 1.5)[0]
    data = rng.normal(size=(183, 20000)).astype(np.float32)
    fractions = np.sort(np.asarray(DEFAULT_FRACTIONS))  # fracridge wants them ascending

    start = time.perf_counter()
    ours = FractionalRidge(design, data)
    ours_betas = [ours.betas(f) for f in fractions]
    ours_s = time.perf_counter() - start

    start = time.perf_counter()
    theirs, _ = fracridge.fracridge(design, data.astype(np.float64), fracs=fractions)
    theirs_s = time.perf_counter() - start

    error = max(float(np.max(np.abs(o - theirs[:, k, :]))) / float(np.max(np.abs(theirs[:, k, :])))
                for k, o in enumerate(ours_betas))
    print(f"fracridge {fracridge.__version__ if hasattr(fracridge, '__version__') else ''}: {theirs_s:.2f} s; "
          f"bids_recon FractionalRidge: {ours_s:.2f} s; ratio {theirs_s / ours_s:.1f}x; "
          f"max relative difference {error:.3f}")


if __name__ == "__main__":
    main()
