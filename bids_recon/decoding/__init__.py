"""Ridge decoders from ROI betas to stimulus features, and voxelwise encoding models (one ridge solver)."""

from bids_recon.decoding.ridge import (
    DecodedTest,
    RidgeDecoder,
    average_repeats,
    describe_solver,
    fit_ridge_decoder,
    train_and_decode,
)
from bids_recon.decoding.solver import EigenRidge, RidgeSolution, solve_ridge

__all__ = ["DecodedTest", "EigenRidge", "RidgeDecoder", "RidgeSolution", "average_repeats", "describe_solver",
           "fit_ridge_decoder", "solve_ridge", "train_and_decode"]
