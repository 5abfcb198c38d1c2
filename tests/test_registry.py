"""The one registry type behind generators, presets, layouts, resolvers and importers."""

from __future__ import annotations

import pytest

from bids_recon.errors import ExitCode, UsageError
from bids_recon.registry import Registry


def test_register_named_and_refusals():
    things = Registry("widget")

    @things.register
    class Round:
        name = "round"

    assert isinstance(things["round"], Round) and things.named("round") is things["round"]
    assert things.register(Round) is Round and len(things) == 1  # the same class again (a reload) is fine

    with pytest.raises(ValueError, match="widget Other needs a unique name"):
        @things.register
        class Other:
            name = "round"

    with pytest.raises(ValueError, match="needs a unique name"):
        @things.register
        class Nameless:
            name = ""

    with pytest.raises(UsageError, match=r"--x: unknown widget 'square' \(known: round\)") as caught:
        things.named("square", prefix="--x: ")
    assert caught.value.exit_code == ExitCode.USAGE


def test_class_registries_keep_classes_under_their_key():
    kinds = Registry("resolver", key="kind", instances=False)

    @kinds.register
    class Files:
        kind = "files"

    assert kinds["files"] is Files


def test_the_packages_registries_are_registries():
    from bids_recon.datasets import PRESETS
    from bids_recon.features.resolvers import RESOLVERS
    from bids_recon.generate.card import generator_cards
    from bids_recon.glm.importers import IMPORTERS
    from bids_recon.sim.layouts import LAYOUTS

    for registry, entry in ((generator_cards(), "linear"), (PRESETS, "nsd"), (LAYOUTS, "nsd"), (RESOLVERS, "files"),
                            (IMPORTERS, "glmsingle")):
        assert isinstance(registry, Registry) and entry in registry
