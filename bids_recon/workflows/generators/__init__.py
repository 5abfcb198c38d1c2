"""The builders of the generators' parts of the participant workflow: one module each, registered by card name.

What a generator is (its settings, flags, decoders, feature spaces, checks, output variants, references and
methods text) is its card, in its own module of :mod:`bids_recon.generate` (:mod:`bids_recon.generate.card`). Here
each generator's module registers, with :func:`builder`, the function that wires its part of one participant's
workflow from nipype interfaces; :func:`init_generator_wf` builds the configured generator's part. Modules of this
package are imported (and so register their builder) when a builder is first looked up.

A builder is called as ``build(card, config, inputs, names, device, name)`` and returns a workflow whose
``inputnode`` fields are ``betas`` (z-scored single-trial betas, ``.npy``), ``trials`` (the trial table),
``mask_file`` (brain mask) and ``roi_files`` (ROI name -> mask); ``outputnode.out_files`` lists the derivatives
it wrote (the report waits for them) and ``outputnode.features`` the feature files of the card's
``feature_spaces`` (when the encoding models run; see :func:`bids_recon.workflows.encoding.encoding_spaces`). Its
``__desc__`` is the card's ``methods``. Its evaluation node calls ``bids_recon.evaluate.evaluate_generated`` once
and is wired with :mod:`bids_recon.workflows.evaluation` (``evaluation_inputs``, ``metrics_sink``,
``connect_metrics``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bids_recon.decoding.reuse import methods_note, stimulus_id_kind
from bids_recon.errors import InvariantError
from bids_recon.generate.card import GeneratorCard, RunConfig, generator_card

if TYPE_CHECKING:  # pragma: no cover
    from nipype.pipeline import engine as pe

    from bids_recon.bids.layout import SubjectInputs
    from bids_recon.config import Config
    from bids_recon.naming import SubjectOutputs

#: ``build(card, config, inputs, names, device, name) -> Workflow``.
Builder = Callable[..., Any]
#: Registered builders by the name of the card they build.
BUILDERS: dict[str, Builder] = {}
_found: list[bool] = []


def builder(card: type[GeneratorCard]) -> Callable[[Builder], Builder]:
    """Function decorator: register the builder of ``card``'s part of the workflow under the card's name."""

    def register(build: Builder) -> Builder:
        if not card.name or BUILDERS.get(card.name, build) is not build:
            raise ValueError(f"builder {build.__name__} needs a card with a unique name (got '{card.name}')")
        BUILDERS[card.name] = build
        return build

    return register


def generator_builder(name: str) -> Builder:
    """The builder of generator ``name``.

    Raises
    ------
    UsageError
        No card is registered under ``name`` (exit 64; the message names the known generators).
    InvariantError
        A card without a builder (exit 70: the generator's module is incomplete).
    """
    card = generator_card(name)
    if not _found:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _found.append(True)
    if card.name not in BUILDERS:
        raise InvariantError(f"generator '{card.name}' has a card ({type(card).__module__}) but no workflow builder: "
                             f"register one with @builder in a module of {__name__}")
    return BUILDERS[card.name]


def generator_methods(card: GeneratorCard, config: RunConfig) -> str:
    """The methods paragraph of a generator's part of the workflow: its card's :meth:`~GeneratorCard.methods`, and,
    when the decoders come from an earlier run (``--decoders-from``), the sentence that says so."""
    text = card.methods(config)
    source = getattr(config.workflow.decoding, "decoders_from", "")
    if source:
        text = f"{text} {methods_note(source)}"
    return text


def init_generator_wf(config: Config, inputs: SubjectInputs, names: SubjectOutputs, device: str,
                      name: str | None = None) -> pe.Workflow:
    """The configured generator's part of one participant's workflow (named ``<generator>_wf``)."""
    card = generator_card(config.workflow.generate.generator)
    return generator_builder(card.name)(card, config, inputs, names, device, name or f"{card.name}_wf")


def decode_node(card: GeneratorCard, config: Config, names: SubjectOutputs, roi: str, target: str, device: str,
                name: str, mem_gb: float, identity: dict | None = None) -> pe.Node:
    """The node giving the decoder of ``(roi, target)`` and the decoded features (outputs ``decoder``, ``decoded``).

    A :class:`~bids_recon.interfaces.stages.Decode` node fits it; with ``--decoders-from DIR`` a
    :class:`~bids_recon.interfaces.reuse.ReuseDecoder` node applies DIR's decoder of the same participant, ROI and
    target (DIR's decoders are looked up here, before any node runs: a missing one is exit 65). ``identity``: the
    feature model's sidecar keys, compared with the ones the earlier decoder recorded.
    """
    from nipype.pipeline import engine as pe

    from bids_recon.params import to_dict

    wf_cfg = config.workflow
    source = wf_cfg.decoding.decoders_from
    if not source:
        from bids_recon.interfaces.stages import Decode

        return pe.Node(Decode(roi=roi, target=target, params=to_dict(wf_cfg.decoding), device=device,
                              stimulus_ids=stimulus_id_kind(wf_cfg.stimuli.resolver)), name=name, mem_gb=mem_gb)
    from bids_recon.decoding.reuse import find_source_decoders
    from bids_recon.interfaces.reuse import ReuseDecoder

    this_run = config.execution.output_dir
    find_source_decoders(source, names.subject, names.task, card.decoders(config), f"this run ({this_run})")
    return pe.Node(ReuseDecoder(roi=roi, target=target, decoders_from=source, subject=names.subject, task=names.task,
                                wanted=[tuple(w) for w in card.decoders(config)], identity=identity or {},
                                this_run=str(this_run), stimulus_ids=stimulus_id_kind(wf_cfg.stimuli.resolver)),
                   name=name, mem_gb=mem_gb)


def connect_decoded(wf: pe.Workflow, decode: pe.Node, ds_decoder: pe.Node, ds_decoded: pe.Node) -> None:
    """Connect a :func:`decode_node` to the sinks of its decoder (with the JSON beside it) and decoded features
    (with, for reused decoders, the JSON naming the source decoder)."""
    from bids_recon.workflows.utils import decoder_sidecar

    wf.connect([(decode, ds_decoder, [("decoder", "in_file"), (("decoder", decoder_sidecar), "extra_files")]),
                (decode, ds_decoded, [("decoded", "in_file")])])
    if "decoded_sidecar" in decode.outputs.copyable_trait_names():
        from bids_recon.workflows.utils import as_extra

        wf.connect(decode, ("decoded_sidecar", as_extra, ".json"), ds_decoded, "extra_files")


__all__ = ["BUILDERS", "builder", "connect_decoded", "decode_node", "generator_builder", "generator_methods",
           "init_generator_wf"]
