"""Generators: decoded features -> images (plain classes), each described by a card in its own module
(:mod:`bids_recon.generate.card`; the builders of their parts of the workflow are in
:mod:`bids_recon.workflows.generators`). Importing the package registers every generator's card."""

from bids_recon.generate.card import discover
from bids_recon.generate.linear import LinearImageGenerator, LinearParams

discover()

__all__ = ["LinearImageGenerator", "LinearParams"]
