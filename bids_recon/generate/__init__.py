"""Generators: decoded features -> images."""

from bids_recon.generate.linear import LinearImageGenerator

#: Generators by name (``--generator``).
GENERATORS = {"linear": LinearImageGenerator}

__all__ = ["GENERATORS", "LinearImageGenerator"]
