"""Ridge decoders from ROI betas to stimulus features."""

from bids_recon.decoding.ridge import DecodedTest, RidgeDecoder, average_repeats, fit_ridge_decoder, train_and_decode

__all__ = ["DecodedTest", "RidgeDecoder", "average_repeats", "fit_ridge_decoder", "train_and_decode"]
