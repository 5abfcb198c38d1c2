"""bids_recon: reconstruct seen images from fMRI activity (a BIDS-App)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bids_recon")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
