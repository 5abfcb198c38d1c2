"""One typed configuration tree, composed of the domain packages' parameter dataclasses, saved as TOML.

The effective configuration of a run is: the documented defaults (each owned by its domain package: GLM in
:mod:`bids_recon.glm.params`, ROIs in :mod:`bids_recon.rois.params`, stimuli in :mod:`bids_recon.features.params`,
decoders in :mod:`bids_recon.decoding.params`, evaluation in :mod:`bids_recon.evaluate.params`, each generator's
own in its module, named by its card: :mod:`bids_recon.generate.card`), then ``--config-file`` (a TOML file with
the same tables: ``[workflow.glm]``, ``[workflow.generate.diffusion]``, ``[execution]``, ``[nipype]``...), then the
flags typed on the command line (parser ``dest`` names are these dotted keys, so a flag typed at its default value
still wins).
:meth:`Config.from_dict` validates every value (types, ranges, allowed values; unknown keys) and raises
:class:`~bids_recon.errors.UsageError` (exit 64) naming the key, the value, where it came from and what is
allowed. The file written to ``OUTPUT_DIR/logs/<run>/bids_recon.toml`` reproduces a run on its own.
"""

from __future__ import annotations

import os
import platform
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from bids_recon import __version__
from bids_recon.decoding.params import DecodingParams, EncodingParams, SharedSpaceParams
from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.evaluate.params import EvaluationParams
from bids_recon.features.params import StimulusParams
from bids_recon.generate.card import default_generator, generator_card, generator_cards
from bids_recon.glm.params import GlmParams
from bids_recon.params import build, locate, setting, to_dict
from bids_recon.rois.params import RoiParams


def dataset_presets() -> list[str]:
    """``--dataset`` values: ``""`` (none) and the registered presets (:mod:`bids_recon.datasets`)."""
    from bids_recon.datasets import PRESETS

    return ["", *PRESETS]


@dataclass
class GenerateConfig:
    """Which generator turns decoded features into images, and each generator's own settings.

    The settings of generator ``NAME`` are the table ``[workflow.generate.NAME]`` (its card's ``params``
    dataclass), reachable as ``config.workflow.generate.NAME``; :attr:`params` is the chosen generator's.
    """

    generator: str = setting(factory=default_generator, choices=lambda: list(generator_cards()), doc=lambda: (
        "image generator (each has its own settings table [workflow.generate.NAME] and options): "
        + "; ".join(f"'{card.name}' = {card.summary}" for card in generator_cards().values())))
    sections: dict[str, Any] = field(default_factory=lambda: {n: c.params() for n, c in generator_cards().items()},
                                     metadata={"sections": True})

    @classmethod
    def __sections__(cls) -> dict[str, type]:
        return {name: card.params for name, card in generator_cards().items()}

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections") or {}
        if name in sections:
            return sections[name]
        raise AttributeError(f"no generator settings '{name}' (known: {', '.join(sections)})")

    @property
    def params(self) -> Any:
        """Settings of the chosen generator."""
        return self.sections[self.generator]


@dataclass
class WorkflowConfig:
    """What is computed."""

    space: str = setting("MNI152NLin2009cAsym", doc="fMRIPrep output space of the preprocessed BOLD to use")
    resolution: str | None = setting("2", doc=(
        "'res-' label of the preprocessed BOLD ('none' when the files have no res- entity)"))
    betas_only: bool = setting(False, doc=(
        "stop after the single-trial betas (as fMRIPrep's --anat-only): per-run statmaps, the trial table, the GLM's "
        "maps and a report of them; no stimuli, captions, test split or ROIs are needed. Without a stimulus column "
        "in the events, trials are the rows of the 'trial_type' column (each condition's presentations are "
        "'repeats'); the split is 'n/a' unless --test-split names one"))
    glm: GlmParams = field(default_factory=GlmParams)
    rois: RoiParams = field(default_factory=RoiParams)
    stimuli: StimulusParams = field(default_factory=StimulusParams)
    decoding: DecodingParams = field(default_factory=DecodingParams)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    evaluate: EvaluationParams = field(default_factory=EvaluationParams)
    encoding: EncodingParams = field(default_factory=EncodingParams)
    shared: SharedSpaceParams = field(default_factory=SharedSpaceParams)


@dataclass
class ExecutionConfig:
    """Where data are and how the run behaves."""

    bids_dir: str = setting("", doc="the raw BIDS dataset (with events.tsv and stimuli/)")
    dataset: str = setting("", choices=dataset_presets, doc=(
        "a public dataset's preset: sets the stimulus resolver, column, test split, task, caption source and the "
        "fMRIPrep space its derivatives use, below --config-file and the flags typed (see the dataset recipes)"))
    output_dir: str = setting("", doc="where the derivatives dataset is written; must not be inside bids_dir")
    analysis_level: str = setting("participant", choices=("participant", "group"), doc=(
        "'participant' (one report per participant) or 'group' (group table and report across the participants "
        "present in output_dir)"))
    work_dir: str = setting("", doc=(
        "nipype work directory; rerunning with the same one resumes (default: OUTPUT_DIR/../work)"))
    derivatives: dict[str, str] = setting(factory=dict, doc=(
        "derivative datasets; 'fmriprep=PATH' is required unless bids_dir/derivatives/fmriprep exists"))
    participant_label: list[str] = setting(factory=list, doc=(
        "participants to process (with or without 'sub-'); all by default"))
    session_label: list[str] = setting(factory=list, doc="sessions to use (with or without 'ses-'); all by default")
    task_id: str | list[str] | None = setting(None, doc=(
        "task(s) to use; needed only when the dataset has several. Several tasks are analysed together (NOD: "
        "imagenet runs train, coco runs test), their outputs named with the labels joined"))
    bids_filters: dict[str, Any] = setting(factory=dict, doc=(
        'extra entity filters for the BOLD query, as fMRIPrep: {"bold": {"run": [1, 2]}}'))
    skip_bids_validation: bool = setting(False, doc="do not run the BIDS validator on bids_dir")
    stop_on_first_crash: bool = setting(False, doc="stop at the first failing node")
    reports_only: bool = setting(False, doc="only rebuild the HTML reports from the outputs already in output_dir")
    check_only: bool = setting(False, doc=(
        "check the inputs (files, grids, stimuli, split, ROIs, captions, model) and the workflow, write the log and "
        "methods text, then stop without computing: run it before queueing a long job"))
    random_seed: int = setting(0, ge=0, doc="seed of every random step")
    allow_download: bool = setting(False, doc=(
        "allow downloading at run time what is not on disk: the diffusion model and the evaluation networks' "
        "weights (without it they must be in the caches beforehand, e.g. by bids_recon-fetch)"))
    device: str = setting("auto", choices=("auto", "cpu", "cuda"), doc=(
        "where ridge and generation run; auto = CUDA when available"))
    log_level: str = setting("INFO", choices=("INFO", "VERBOSE", "DEBUG"), doc="how much the log says")
    run_id: str = setting("", doc="identifier of the run (set when it starts)")
    templateflow_home: str = setting("", doc="TEMPLATEFLOW_HOME of the run (recorded when it starts)")


@dataclass
class NipypeConfig:
    """How nipype runs the workflow."""

    plugin: str = setting("MultiProc", doc="nipype execution plugin")
    plugin_args: dict[str, Any] = setting(factory=dict, doc="arguments of the plugin")
    nprocs: int = setting(0, ge=0, doc="processes nipype runs at once (0, the default: all CPUs)")
    omp_nthreads: int = setting(1, ge=1, doc="threads per process for BLAS/OpenMP")
    mem_gb: float | None = setting(None, gt=0, doc="memory nipype may schedule, in GB (default: no limit)")
    poll_sleep_duration: float = setting(0.1, gt=0, doc="seconds between the scheduler's polls")


@dataclass
class EnvironmentConfig:
    """Read-only facts about the machine, recorded for provenance (never read back from a file)."""

    version: str = __version__
    python: str = sys.version.split()[0]
    platform: str = platform.platform()
    cpu_count: int = os.cpu_count() or 1


#: Settings of earlier layouts of the file and where they went (a file using them is refused with the new name).
MOVED = {
    "workflow.decoding.roi": "workflow.generate.linear.roi",
    "workflow.decoding.n_components": "workflow.generate.linear.n_components",
    "workflow.stimuli.image_size": "workflow.generate.linear.image_size",
    "workflow.decoding.target": None,
    "workflow.generate.diffusion.z_target": None,
    "workflow.generate.diffusion.c_target": None,
    "workflow.generate.diffusion.allow_download": "execution.allow_download",
}
#: Sections of a saved file that are facts of the run that wrote it, not settings.
FACT_SECTIONS = ("environment",)
#: Settings that a file never sets (they describe one invocation).
COMMAND_LINE_ONLY = ("execution.check_only",)


@dataclass
class Config:
    """The whole configuration of one run."""

    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    nipype: NipypeConfig = field(default_factory=NipypeConfig)
    workflow: WorkflowConfig = field(default_factory=WorkflowConfig)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain TOML types (``None`` dropped, or ``"none"`` where the default is not None)."""
        return to_dict(self)

    def save(self, path: Path) -> Path:
        """Write the configuration as TOML to ``path`` (atomically) and return the path."""
        from bids_recon.io import atomic_write_text

        return atomic_write_text(Path(path), tomli_w.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], sources: Mapping[str, str] | None = None,
                  source: str = "the configuration") -> Config:
        """Build and validate a configuration from nested tables.

        Parameters
        ----------
        data : mapping
            ``{"workflow": {"glm": {...}}, "execution": {...}, ...}``; missing keys take their defaults.
        sources : mapping, optional
            Dotted key -> where its value came from; keys not listed came from ``source``.
        source : str
            Where the values not in ``sources`` came from (named in error messages).

        Raises
        ------
        UsageError
            Unknown or moved keys, values of the wrong type, out of range or not allowed (exit 64).
        """
        data = {k: v for k, v in dict(data).items() if k not in FACT_SECTIONS}
        flat = dict(flatten(data))
        named = {key: (sources or {}).get(key, source) for key in flat}
        for old, new in MOVED.items():
            if old in flat:
                where = named[old]
                raise UsageError(f"setting '{old}' (from {where}) " + (f"is now '{new}': rename it" if new else
                                                                     "is no longer a setting: remove it"))
        config = build(cls, data, "", named)
        config.check_consistency(named)
        return config

    @classmethod
    def load(cls, path: Path) -> Config:
        """Read a TOML configuration file (as written by :meth:`save` or by hand); see :meth:`from_dict`."""
        return cls.from_dict(read_toml(path), source=f"config file {path}")

    def check_consistency(self, sources: Mapping[str, str] | None = None) -> None:
        """Settings that must agree with each other: every ROI a generator decodes from exists.

        Raises
        ------
        UsageError
            Naming the setting, its value, where it came from, and the ROIs there are.
        """
        sources = sources or {}
        rois = self.workflow.rois.names
        card = generator_card(self.workflow.generate.generator)
        for name in card.roi_settings:
            value = getattr(self.workflow.generate.params, name)
            key = f"workflow.generate.{card.name}.{name}"
            if value not in rois:
                raise UsageError(f"setting '{key}' = {value!r} (from {sources.get(key, 'the default')}) is not an "
                                 f"ROI (ROIs: {', '.join(rois)}; add one with --roi-mask NAME=PATH)")
        self._check_encoding(card, sources)

    def _check_encoding(self, card: Any, sources: Mapping[str, str]) -> None:
        """The encoding models' feature spaces and partition are among those the generator offers."""
        enc = self.workflow.encoding
        offered = list(card.feature_spaces(self))
        where = {k: sources.get(f"workflow.encoding.{k}", "the default") for k in ("features", "partition", "enabled")}
        unknown = [s for s in enc.features if s not in offered]
        if unknown:
            raise UsageError(f"setting 'workflow.encoding.features' = {enc.features!r} (from {where['features']}): "
                             f"{', '.join(unknown)} not offered by the {card.name} generator (it offers: "
                             f"{', '.join(offered) or 'none'})")
        chosen = enc.features or offered
        outside = [s for s in enc.partition if s not in chosen]
        if outside or len(enc.partition) == 1 or len(set(enc.partition)) != len(enc.partition):
            raise UsageError(f"setting 'workflow.encoding.partition' = {enc.partition!r} (from {where['partition']}) "
                             f"must name two or more distinct modelled feature spaces ({', '.join(chosen)})")
        if enc.enabled == "on" and not offered:
            raise UsageError(f"setting 'workflow.encoding.enabled' = 'on' (from {where['enabled']}): the "
                             f"{card.name} generator offers no feature spaces to model")


def read_toml(path: Path) -> dict[str, Any]:
    """The tables of a TOML settings file, without the facts of the run that wrote it.

    Raises
    ------
    MissingInputError, BadDataError
        The file does not exist (66) or is not TOML (65).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("configuration file does not exist", path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BadDataError(f"not valid TOML ({exc})", path) from exc
    for section in FACT_SECTIONS:
        data.pop(section, None)
    for key in COMMAND_LINE_ONLY:
        section, name = key.split(".")
        if isinstance(data.get(section), dict):
            data[section].pop(name, None)
    return data


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", 1)]`` (tables of settings only: dict-valued settings stay whole)."""
    out = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and _is_table(dotted):
            out += flatten(value, dotted + ".")
        else:
            out.append((dotted, value))
    return out


def _is_table(dotted: str) -> bool:
    """Whether the dotted key names a table of settings (not a dict-valued setting such as user_masks)."""
    found = locate(Config, dotted)
    return found is not None and found[0] == "table"


def merge(*layers: tuple[Mapping[str, Any], str | Mapping[str, str]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge layers of flat settings (``{dotted key: value}``), later layers winning; dict-valued settings merge.

    Parameters
    ----------
    *layers : (flat settings, source)
        ``source`` names where the layer's values came from (``config file c.toml``), or maps each key to its
        own source (``the command line (--glm)``).

    Returns
    -------
    data : dict
        Nested tables for :meth:`Config.from_dict`.
    sources : dict
        Dotted key -> the source of its final value.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for flat, source in layers:
        for key, value in flat.items():
            if isinstance(value, Mapping) and isinstance(values.get(key), Mapping):
                value = {**values[key], **value}
            values[key] = value
            sources[key] = source if isinstance(source, str) else source.get(key, "the command line")
    nested: dict[str, Any] = {}
    for key, value in values.items():
        *tables, name = key.split(".")
        target = nested
        for table in tables:
            target = target.setdefault(table, {})
            if not isinstance(target, dict):
                raise UsageError(f"'{'.'.join(tables)}' (from {sources[key]}) must be a table of settings")
        target[name] = value
    return nested, sources
