"""The generator registry: each generator is one module here that registers a :class:`GeneratorSpec`.

A spec says what a generator needs and does: its settings (a parameter dataclass from its domain module, the
``[workflow.generate.<name>]`` table), the ROIs it decodes from, its decoders (shown in the report), the extra
input checks it needs before any work (captions, a model), its part of the participant workflow and that part's
methods paragraph. The participant workflow, the command line, the configuration and the citation boilerplate
ask the registry; none of them branches on a generator's name, so adding a generator is adding a module here
(modules of this package are imported, and so registered, when the registry is first read).

Importing a spec module is cheap: nipype and the interfaces are imported inside :meth:`GeneratorSpec.init_wf`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from bids_recon.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from nipype.pipeline import engine as pe

    from bids_recon.bids.checks import CheckedInputs
    from bids_recon.bids.derivatives import SubjectOutputs
    from bids_recon.bids.layout import SubjectInputs
    from bids_recon.config import Config


class GeneratorSpec:
    """What the pipeline needs to know about one generator (subclass it, then decorate with :func:`register`).

    Attributes
    ----------
    name : str
        ``--generator`` value, the ``desc-`` of its outputs and the name of its settings table.
    params : type
        Dataclass of its settings (fields declared with :func:`bids_recon.params.setting`).
    summary : str
        One line for ``--help``.
    roi_settings : tuple of str
        Fields of ``params`` that name an ROI (checked against the configured ROIs before any work).
    references : tuple of str
        Keys of :data:`bids_recon.reports.citation.REFERENCES` that a run with this generator cites.
    """

    name: ClassVar[str] = ""
    params: ClassVar[type] = object
    summary: ClassVar[str] = ""
    roi_settings: ClassVar[tuple[str, ...]] = ()
    references: ClassVar[tuple[str, ...]] = ()
    #: title of the generator's group of command-line options
    options_title: ClassVar[str] = ""
    #: ``bids_recon-fetch`` groups of downloads a run with this generator needs besides the common ones
    fetch_groups: ClassVar[tuple[str, ...]] = ()
    #: whether the encoding models run by default (``[workflow.encoding] enabled = "auto"``) with this generator
    encoding_default: ClassVar[bool] = False
    #: feature spaces whose unique variance the encoding models partition by default (``partition`` empty)
    encoding_partition: ClassVar[tuple[str, ...]] = ()

    def add_options(self, option: Callable[..., Any], paths: Any) -> None:
        """Declare the command-line flags of this generator's settings.

        ``option(*flags, key=..., **argparse_kwargs)`` adds one flag; ``key`` is a field of :attr:`params` (or a
        dotted key of another setting, e.g. ``workflow.stimuli.captions``). ``paths.absolute`` and
        ``paths.absolute_if_exists`` are argparse types that make paths absolute (nodes run in their own folders).
        """

    def settings(self, config: Config) -> Any:
        """This generator's settings in ``config``."""
        return config.workflow.generate.sections[self.name]

    def decoders(self, config: Config) -> list[tuple[str, str]]:
        """``(roi, target)`` of each decoder the generator fits (the report shows them)."""
        raise NotImplementedError

    def feature_spaces(self, config: Config) -> dict[str, str]:
        """The per-stimulus feature spaces this generator's part can give the encoding models: name -> description.

        Names are letters and digits (they name output files). When the encoding models run, the part's
        ``outputnode.features`` maps each space :func:`bids_recon.workflows.encoding.encoding_spaces` selects to an
        ``.npz`` with ``stim_ids`` ``(n_stimuli,)`` and ``features`` ``(n_stimuli, n_features)``.
        """
        return {}

    def check_inputs(self, config: Config, inputs: dict[str, SubjectInputs], checked: CheckedInputs) -> None:
        """Checks of the generator's own inputs, made before any work (raise a BidsReconError).

        ``checked`` is what the common checks saw (:func:`bids_recon.bids.checks.check_inputs`): runs, trials and
        the distinct stimulus ids.
        """

    def prepare(self, config: Config) -> None:
        """Find what the workflow needs outside the dataset (e.g. a model), failing early (exit 66) without it."""

    def methods(self, config: Config) -> str:
        """The methods paragraph of this generator's part of the workflow (its ``__desc__``)."""
        raise NotImplementedError

    def init_wf(self, config: Config, inputs: SubjectInputs, names: SubjectOutputs, device: str,
                name: str) -> pe.Workflow:
        """This generator's part of one participant's workflow.

        ``inputnode`` fields: ``betas`` (z-scored single-trial betas, ``.npy``), ``trials`` (the trial table),
        ``mask_file`` (brain mask), ``roi_files`` (ROI name -> mask). ``outputnode.out_files``: the derivatives it
        wrote (the report waits for them); ``outputnode.features``: the feature files of :meth:`feature_spaces`
        (see there). Its ``__desc__`` is :meth:`methods`. Its evaluation node calls
        ``bids_recon.evaluate.evaluate_generated`` once and is wired with :mod:`bids_recon.workflows.evaluation`
        (``evaluation_inputs``, ``metrics_sink``, ``connect_metrics``, ``evaluation_methods``).
        """
        raise NotImplementedError


#: Registered generators by name (one spec instance each), in registration order.
GENERATORS: dict[str, GeneratorSpec] = Registry("generator")
#: Class decorator: add a spec to :data:`GENERATORS` under its ``name``.
register = GENERATORS.register


def get_generator(name: str) -> GeneratorSpec:
    """The spec registered as ``name`` (raises UsageError, exit 64, naming the known ones)."""
    return GENERATORS.named(name)


def _import_all() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "linear", m.name)):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all()
