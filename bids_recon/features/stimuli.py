"""Map an events row's stimulus to its image and captions (the resolvers in :mod:`bids_recon.features.resolvers`).

Kept as the short import path of the stimulus interface: :func:`resolver_for` builds the resolver the settings
describe; :func:`load_captions` reads a captions TSV; :func:`captions_for` joins any caption source.
"""

from __future__ import annotations

from bids_recon.features.captions import captions_for, captions_path, load_captions, stimulus_captions
from bids_recon.features.resolvers import RESOLVERS, StimulusResolver, resolver_for, trial_rows

__all__ = ["RESOLVERS", "StimulusResolver", "captions_for", "captions_path", "load_captions", "resolver_for",
           "stimulus_captions", "trial_rows"]
