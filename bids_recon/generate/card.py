"""Generator cards: what the pipeline knows about each generator, without nipype, and their registry.

A generator is described by a :class:`GeneratorCard` registered (:func:`register`) in its own module of this
package, beside its settings and its code (:mod:`bids_recon.generate.linear`, :mod:`~bids_recon.generate.diffusion`,
:mod:`~bids_recon.generate.latent`): its settings (a parameter dataclass, the ``[workflow.generate.<name>]`` table)
and their flags, the ROIs it decodes from, its decoders and feature spaces, the downloads ``bids_recon-fetch``
makes for it, whether the encoding models run with it by default, its output variants (their ``desc-`` and their
labels in the report), the references it cites, its methods paragraph, and the checks it needs before any work
(captions, a model). The configuration, the command line, ``bids_recon-fetch``, the report and the citations
ask the cards; none of them names a generator.

How its part of the participant workflow is built is not here: :mod:`bids_recon.workflows.generators` registers
one builder under each card's name.

A card reads the run's configuration (:class:`bids_recon.config.Config`, the ``config`` argument of its methods)
without importing it: the configuration is composed from the cards' settings, above this package.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from bids_recon.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from bids_recon.download import FetchItem, Layout


class RunConfig(Protocol):
    """What a card reads: the run's :class:`bids_recon.config.Config` (``workflow`` and ``execution`` tables)."""

    workflow: Any
    execution: Any


@dataclass(frozen=True)
class OutputVariant:
    """One kind of reconstruction a generator writes for every test stimulus.

    Attributes
    ----------
    name : str
        The value of the reconstruction index's ``variant`` column (``zc``).
    label : str
        The row label of the report's reconstruction figure (``z + c``).
    sampled : bool
        Several seeded samples per stimulus (their ``desc-`` ends in ``sample<k>``, 1-based), or one image.
    """

    name: str
    label: str
    sampled: bool = True


class GeneratorCard:
    """What the pipeline needs to know about one generator (subclass it, then decorate with :func:`register`).

    Attributes
    ----------
    name : str
        ``--generator`` value, the ``desc-`` of its outputs and the name of its settings table.
    params : type
        Dataclass of its settings (fields declared with :func:`bids_recon.params.setting`).
    summary : str
        One line for ``--help``.
    options_title : str
        Title of its group of command-line options.
    default : bool
        The generator a configuration uses unless told otherwise (one card says so).
    roi_settings : tuple of str
        Fields of ``params`` that name an ROI (checked against the configured ROIs before any work).
    references : tuple of str
        Keys of :data:`bids_recon.reports.citation.REFERENCES` that a run with this generator cites.
    fetch_group : str
        The ``bids_recon-fetch --include`` group of the downloads it needs (:meth:`downloads`); empty: none.
    encoding_default : bool
        Whether the encoding models run by default (``[workflow.encoding] enabled = "auto"``) with it.
    encoding_partition : tuple of str
        Feature spaces whose unique variance the encoding models partition by default (``partition`` empty).
    variants : tuple of OutputVariant
        Its kinds of reconstructions, when it writes several per stimulus; empty: one image per stimulus.
    """

    name: ClassVar[str] = ""
    params: ClassVar[type] = object
    summary: ClassVar[str] = ""
    options_title: ClassVar[str] = ""
    default: ClassVar[bool] = False
    roi_settings: ClassVar[tuple[str, ...]] = ()
    references: ClassVar[tuple[str, ...]] = ()
    fetch_group: ClassVar[str] = ""
    encoding_default: ClassVar[bool] = False
    encoding_partition: ClassVar[tuple[str, ...]] = ()
    variants: ClassVar[tuple[OutputVariant, ...]] = ()

    # ---------------------------------------------------------------------------------------------- settings
    def add_options(self, option: Callable[..., Any], paths: Any) -> None:
        """Declare the command-line flags of this generator's settings.

        ``option(*flags, key=..., **argparse_kwargs)`` adds one flag; ``key`` is a field of :attr:`params` (or a
        dotted key of another setting, e.g. ``workflow.stimuli.captions``). ``paths.absolute`` and
        ``paths.absolute_if_exists`` are argparse types that make paths absolute (nodes run in their own folders).
        """

    def settings(self, config: RunConfig) -> Any:
        """This generator's settings in ``config`` (an instance of :attr:`params`)."""
        return config.workflow.generate.sections[self.name]

    # ------------------------------------------------------------------------------------- what it computes
    def decoders(self, config: RunConfig) -> list[tuple[str, str]]:
        """``(roi, target)`` of each decoder the generator fits (the report shows them)."""
        raise NotImplementedError

    def feature_spaces(self, config: RunConfig) -> dict[str, str]:
        """The per-stimulus feature spaces this generator's part can give the encoding models: name -> description.

        Names are letters and digits (they name output files). When the encoding models run, the part's
        ``outputnode.features`` maps each space :func:`bids_recon.workflows.encoding.encoding_spaces` selects to an
        ``.npz`` with ``stim_ids`` ``(n_stimuli,)`` and ``features`` ``(n_stimuli, n_features)``.
        """
        return {}

    def encoding_enabled(self, config: RunConfig) -> bool:
        """Whether a run with this generator fits encoding models (``auto``: :attr:`encoding_default`)."""
        return config.workflow.encoding.runs(list(self.feature_spaces(config)), self.encoding_default)

    def methods(self, config: RunConfig) -> str:
        """The methods paragraph of this generator's part of the workflow (its ``__desc__``)."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------- outputs
    def image_desc(self, variant: str | None = None, sample: int = 0) -> str:
        """The ``desc-`` of one reconstructed image (:meth:`bids_recon.bids.derivatives.SubjectOutputs.recon_image`).

        The generator's name, followed for a generator with :attr:`variants` by the variant and, for a sampled
        one, ``sample<k>`` (1-based): ``diffusionz``, ``diffusionzcsample1``.
        """
        if not self.variants:
            return self.name
        found = next((v for v in self.variants if v.name == variant), None)
        if found is None:
            raise ValueError(f"generator '{self.name}' has no output variant {variant!r} "
                             f"(it has {', '.join(v.name for v in self.variants)})")
        return f"{self.name}{found.name}" + (f"sample{int(sample) + 1}" if found.sampled else "")

    def variant_labels(self) -> dict[str, str]:
        """Variant -> its label in the report's figures, in the order the report shows them."""
        return {v.name: v.label for v in self.variants}

    # ------------------------------------------------------------------------------------ before any work
    def check_inputs(self, config: RunConfig, checked: Any) -> None:
        """Checks of the generator's own inputs, made before any work (raise a BidsReconError).

        ``checked`` is what the common checks saw (:class:`bids_recon.bids.checks.CheckedInputs`): runs, trials
        and the distinct stimulus ids (``stim_ids``).
        """

    def prepare(self, config: RunConfig) -> None:
        """Find what the workflow needs outside the dataset (e.g. a model), failing early (exit 66) without it."""

    # ------------------------------------------------------------------------------------ bids_recon-fetch
    def add_fetch_options(self, option: Callable[..., Any]) -> None:
        """Declare the ``bids_recon-fetch`` flags that override settings for :meth:`downloads`.

        ``option(*flags, key=..., help=...)`` adds one flag; ``key`` is a field of :attr:`params`.
        """

    def downloads(self, params: Any, layout: Layout, report: Callable[[str], None] = print) -> list[FetchItem]:
        """The files ``bids_recon-fetch`` gets for a run with these settings (:attr:`fetch_group`)."""
        return []


#: Registered generator cards by name (one instance each); read them with :func:`generator_cards`.
GENERATORS: Registry = Registry("generator")
#: Class decorator: add a card to :data:`GENERATORS` under its ``name``.
register = GENERATORS.register


def discover() -> None:
    """Import every module of this package: each generator's module registers its card (the package does it when
    it is first imported, so the registry is full whenever a card is asked for)."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__package__}.{module.name}")


def generator_cards() -> Registry:
    """Every registered card, the default generator first, then by name."""
    ordered = sorted(GENERATORS.values(), key=lambda card: (not card.default, card.name))
    if list(GENERATORS.values()) != ordered:
        GENERATORS.clear()
        GENERATORS.update({card.name: card for card in ordered})
    return GENERATORS


def generator_card(name: str) -> GeneratorCard:
    """The card registered as ``name`` (raises UsageError, exit 64, naming the known ones)."""
    return generator_cards().named(name)


def default_generator() -> str:
    """The name of the card marked :attr:`GeneratorCard.default`."""
    return next(card.name for card in generator_cards().values() if card.default)


__all__ = ["GENERATORS", "GeneratorCard", "OutputVariant", "RunConfig", "default_generator", "discover",
           "generator_card", "generator_cards", "register"]
