"""Generators: decoded features -> images (plain classes; their pipeline registration is in
:mod:`bids_recon.workflows.generators`)."""

from bids_recon.generate.linear import LinearImageGenerator, LinearParams

__all__ = ["LinearImageGenerator", "LinearParams"]
