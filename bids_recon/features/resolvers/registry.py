"""The registry of stimulus resolver kinds and the ``--stimuli KIND[:KEY=VALUE,...]`` spec they are chosen by.

Each kind's module registers its class here (:func:`register`) when :mod:`bids_recon.features.resolvers` imports it;
importing this module imports that package first, so every kind is registered before a spec is parsed. This module
imports no resolver and no settings class: the settings (:mod:`bids_recon.features.params`) check their
``resolver`` value here, and the resolvers take the settings.
"""

from __future__ import annotations

from bids_recon.errors import UsageError
from bids_recon.registry import Registry

#: Registered resolver classes (:class:`bids_recon.features.resolvers.StimulusResolver` subclasses) by kind, in
#: registration order.
RESOLVERS: dict[str, type] = Registry("stimulus resolver", key="kind", instances=False)
#: Class decorator: add a resolver class to :data:`RESOLVERS` under its ``kind``.
register = RESOLVERS.register


def parse_options(kind: str, text: str, allowed: dict[str, str]) -> dict[str, str]:
    """``KEY=VALUE,KEY=VALUE`` -> dict, refusing keys the resolver does not know (UsageError, exit 64)."""
    options: dict[str, str] = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UsageError(f"--stimuli {kind}: option '{item}' must be KEY=VALUE")
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise UsageError(f"--stimuli {kind}: unknown option '{key}' (options of {kind}: {known})")
        options[key] = value
    return options


def parse_resolver(spec: str) -> tuple[str, dict[str, str]]:
    """``KIND[:KEY=VALUE,...]`` -> ``(kind, options)``.

    Raises
    ------
    UsageError
        Unknown kind or option, or an option that is not ``KEY=VALUE`` (exit 64).
    """
    kind, _, text = str(spec).partition(":")
    kind = kind.strip()
    return kind, parse_options(kind, text, RESOLVERS.named(kind).options)


__all__ = ["RESOLVERS", "parse_options", "parse_resolver", "register"]
