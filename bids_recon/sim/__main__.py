"""``python -m bids_recon.sim``: same as ``bids_recon-sim``."""

import sys

from bids_recon.sim.cli import main

sys.exit(main())
