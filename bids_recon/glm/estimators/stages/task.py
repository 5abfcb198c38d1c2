"""Task-responsive voxels: those the cross-validation of repeats scores (the best single-trial fits)."""

from __future__ import annotations

import numpy as np

#: Voxels at or above this percentile of the single-trial R² are task-responsive.
TASK_PERCENTILE = 90
#: Task-responsive voxels scored by the cross-validation (a seeded random subset when more qualify).
TASK_VOXELS_MAX = 2000


def task_voxels(r2: np.ndarray, rng: np.random.Generator, max_voxels: int = TASK_VOXELS_MAX) -> np.ndarray:
    """Sorted indices of the voxels whose single-trial R² ``(n_voxels,)`` is in the top decile, at most
    ``max_voxels`` of them (drawn with ``rng``)."""
    task = np.flatnonzero(r2 >= np.percentile(r2, TASK_PERCENTILE))
    if len(task) > max_voxels:
        task = np.sort(rng.choice(task, max_voxels, replace=False))
    return task
