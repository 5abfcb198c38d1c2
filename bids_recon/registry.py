"""One registry type for every kind that grows by adding a module: generators, dataset presets, simulator layouts,
stimulus resolvers and beta importers.

A registry is a dict from a class's key attribute (``name``, ``kind`` or ``format``) to the class or to one
instance of it, filled by the :meth:`Registry.register` class decorator when the module defining the class is
imported, in import order.
"""

from __future__ import annotations

from typing import Any, TypeVar

from bids_recon.errors import UsageError

T = TypeVar("T", bound=type)

#: Every registry made so far, in creation order (the documentation lists the kinds from them).
ALL: list[Registry] = []


class Registry(dict):
    """Registered classes (or one instance of each) by their key attribute.

    Parameters
    ----------
    what : str
        What is registered, for messages (``"generator"``, ``"dataset preset"``).
    key : str
        The class attribute that names an entry (``"name"``, ``"kind"``, ``"format"``).
    instances : bool
        Store one instance of each class (True) or the class itself (False).
    """

    def __init__(self, what: str, key: str = "name", instances: bool = True) -> None:
        super().__init__()
        self.what, self.key, self.instances = what, key, instances
        ALL.append(self)

    def register(self, cls: T) -> T:
        """Class decorator: add ``cls`` under its key; a second class with the same key is a ValueError."""
        name = getattr(cls, self.key, "")
        registered = self.get(name)
        if self.instances and registered is not None:
            registered = type(registered)
        if not name or registered not in (None, cls):
            raise ValueError(f"{self.what} {cls.__name__} needs a unique {self.key} (got '{name}')")
        self[name] = cls() if self.instances else cls
        return cls

    def named(self, name: str, prefix: str = "") -> Any:
        """The entry registered as ``name``; a UsageError (exit 64) naming the known ones otherwise."""
        if name not in self:
            raise UsageError(f"{prefix}unknown {self.what} '{name}' (known: {', '.join(self)})")
        return self[name]


def summary_of(entry: Any) -> str:
    """One line about a registered entry: its ``summary`` attribute, else its class docstring's first line."""
    text = (getattr(entry, "title", "") or getattr(entry, "summary", "")
            or (type(entry) if not isinstance(entry, type) else entry).__doc__ or "")
    return " ".join(str(text).strip().splitlines()[0].split()) if str(text).strip() else ""


__all__ = ["ALL", "Registry", "summary_of"]
