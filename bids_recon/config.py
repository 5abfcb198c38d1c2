"""One typed configuration tree: every default lives here, and every run saves it as TOML.

The command line fills a :class:`Config`; ``--config-file`` reads a TOML file with the same sections
(``[workflow]``, ``[execution]``, ``[nipype]``) and the flags given on the command line win. The file
written to ``OUTPUT_DIR/logs/<run>/bids_recon.toml`` reproduces a run on its own.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from bids_recon import __version__
from bids_recon.errors import BadDataError, MissingInputError, UsageError

#: Harvard-Oxford cortical labels (names in the atlas's own label table) that make each default ROI.
DEFAULT_ROI_LABELS: dict[str, list[str]] = {
    "earlyvisual": [
        "Intracalcarine Cortex",
        "Supracalcarine Cortex",
        "Cuneal Cortex",
        "Lingual Gyrus",
        "Occipital Pole",
    ],
    "highervisual": [
        "Lateral Occipital Cortex, superior division",
        "Lateral Occipital Cortex, inferior division",
        "Occipital Fusiform Gyrus",
        "Temporal Occipital Fusiform Cortex",
        "Inferior Temporal Gyrus, temporooccipital part",
        "Parahippocampal Gyrus, posterior division",
    ],
}

#: fMRIPrep confound columns regressed out of every run by default.
DEFAULT_CONFOUNDS: list[str] = [
    "trans_x",
    "trans_y",
    "trans_z",
    "rot_x",
    "rot_y",
    "rot_z",
    "csf",
    "white_matter",
]


@dataclass
class GlmConfig:
    """Single-trial beta estimation."""

    #: lsa | lss | fithrf | fithrf-denoise | fithrf-denoise-rr (see bids_recon.glm.estimators)
    estimator: str = "fithrf-denoise-rr"
    high_pass_hz: float = 0.01
    confounds: list[str] = field(default_factory=lambda: list(DEFAULT_CONFOUNDS))
    max_noise_components: int = 10
    #: "session": one ridge fraction per session; "voxel": GLMsingle's per-voxel choice
    fraction_selection: str = "session"
    zscore_per_session: bool = True


@dataclass
class RoiConfig:
    """Visual regions of interest."""

    template: str = "MNI152NLin2009cAsym"
    resolution: int = 2
    atlas: str = "HOCPA"
    atlas_desc: str = "th25"
    label_table_template: str = "MNI152NLin6Asym"
    labels: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_ROI_LABELS.items()})
    user_masks: dict[str, str] = field(default_factory=dict)
    min_voxels: int = 20


@dataclass
class StimulusConfig:
    """How an events row names its image, and how images are loaded."""

    column: str = "stim_file"
    folder: str = "stimuli"
    captions: str = "stimuli/captions.tsv"
    image_size: int = 64
    test_min_repeats: int = 2
    #: ``COLUMN=VALUE[,VALUE...]``: events rows with one of the values are test trials (NSD's shared images,
    #: THINGS' ``trial_type=test``); empty: stimuli shown ``test_min_repeats`` times or more are the test set.
    test_split: str = ""


@dataclass
class DecodingConfig:
    """Ridge decoders from ROI betas to stimulus features."""

    target: str = "imagepca"
    roi: str = "earlyvisual"
    n_components: int = 64
    alphas: list[float] = field(default_factory=lambda: [10.0**k for k in range(0, 9)])
    cv_folds: int = 5


@dataclass
class DiffusionConfig:
    """The latent-diffusion path of Takagi & Nishimoto (2023): z/c features, decoders and sampling.

    ``model`` is a local diffusers folder or a hub id, found offline (``model_dir``, the Hugging Face cache)
    unless ``allow_download``. ``feature_cache`` empty = ``<work_dir>/feature_cache``. ``output_size`` 0 = the
    model's own size (512 px for SD-1.x). Sample ``k`` of every stimulus uses seed ``seed + k``.
    """

    model: str = "CompVis/stable-diffusion-v1-4"
    model_dir: str = ""
    allow_download: bool = False
    feature_cache: str = ""
    latent_image_size: int = 320
    z_roi: str = "earlyvisual"
    c_roi: str = "highervisual"
    z_target: str = "vaelatent"
    c_target: str = "textembedding"
    steps: int = 50
    strength: float = 0.8
    guidance_scale: float = 5.0
    n_samples: int = 5
    seed: int = 42
    batch_size: int = 8
    output_size: int = 0
    variants: list[str] = field(default_factory=lambda: ["z", "c", "zc"])
    progress: bool = True


@dataclass
class GenerateConfig:
    """Image generator that turns decoded features into pictures."""

    generator: str = "linear"
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)


@dataclass
class WorkflowConfig:
    """What is computed."""

    space: str = "MNI152NLin2009cAsym"
    resolution: str | None = "2"
    glm: GlmConfig = field(default_factory=GlmConfig)
    rois: RoiConfig = field(default_factory=RoiConfig)
    stimuli: StimulusConfig = field(default_factory=StimulusConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)


@dataclass
class ExecutionConfig:
    """Where data are and how the run behaves."""

    bids_dir: str = ""
    output_dir: str = ""
    analysis_level: str = "participant"
    work_dir: str = ""
    derivatives: dict[str, str] = field(default_factory=dict)
    participant_label: list[str] = field(default_factory=list)
    session_label: list[str] = field(default_factory=list)
    task_id: str | None = None
    bids_filters: dict[str, Any] = field(default_factory=dict)
    skip_bids_validation: bool = False
    stop_on_first_crash: bool = False
    reports_only: bool = False
    check_only: bool = False
    random_seed: int = 0
    device: str = "auto"
    log_level: str = "INFO"
    run_id: str = ""
    templateflow_home: str = ""


@dataclass
class NipypeConfig:
    """How nipype runs the workflow."""

    plugin: str = "MultiProc"
    plugin_args: dict[str, Any] = field(default_factory=dict)
    nprocs: int = field(default_factory=lambda: os.cpu_count() or 1)
    omp_nthreads: int = 1
    mem_gb: float | None = None
    poll_sleep_duration: float = 0.1


@dataclass
class EnvironmentConfig:
    """Read-only facts about the machine, recorded for provenance."""

    version: str = __version__
    python: str = sys.version.split()[0]
    platform: str = platform.platform()
    cpu_count: int = os.cpu_count() or 1


@dataclass
class Config:
    """The whole configuration of one run."""

    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    nipype: NipypeConfig = field(default_factory=NipypeConfig)
    workflow: WorkflowConfig = field(default_factory=WorkflowConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain TOML-compatible types (``None`` values dropped)."""
        return _drop_none(dataclasses.asdict(self))

    def save(self, path: Path) -> Path:
        """Write the configuration as TOML to ``path`` (atomically) and return the path."""
        from bids_recon.io import atomic_write_text

        return atomic_write_text(Path(path), tomli_w.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build a configuration from nested dicts, refusing unknown keys."""
        return _from_dict(cls, data, "config")

    @classmethod
    def load(cls, path: Path) -> Config:
        """Read a TOML configuration file (as written by :meth:`save` or by hand)."""
        path = Path(path)
        if not path.is_file():
            raise MissingInputError("configuration file does not exist", path)
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise BadDataError(f"not valid TOML ({exc})", path) from exc
        data.pop("environment", None)  # facts of the machine that wrote it, not settings
        try:
            return cls.from_dict(data)
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from exc


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise UsageError(f"section [{where}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UsageError(f"unknown setting(s) in [{where}]: {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value, f"{where}.{name}")
        else:
            kwargs[name] = value
    return cls(**kwargs)
