"""The shared stages of the single-trial estimators, each a module of plain functions on a session's arrays.

:mod:`.design` (nuisance basis and trial designs: :func:`~.design.prepare` starts every fit), :mod:`.hrfs` (each
voxel's HRF), :mod:`.task` (the task-responsive voxels the cross-validation scores), :mod:`.crossval` (repeats
across runs: cross-validation and whether it can guide a choice), :mod:`.noise` (noise pool, components and their
number), :mod:`.ridge` (ridge by marginal likelihood or by a cross-validated fraction), :mod:`.ols` (least squares)
and :mod:`.lss` (least-squares separate). An estimator (a module of :mod:`bids_recon.glm.estimators`) composes them.
"""
