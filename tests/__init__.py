"""bids_recon's tests, arranged like the code: one folder per package (tests/glm for bids_recon/glm...),
the project-wide checks (quality, packaging, docs, configuration, registry, invariants) at the top."""

from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).resolve().parents[1]
