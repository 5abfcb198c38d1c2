"""Allow ``python -m bids_recon``."""

from bids_recon.cli.run import main

if __name__ == "__main__":
    raise SystemExit(main())
