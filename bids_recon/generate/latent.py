"""Latent-vector generators (Dado et al. 2022, "HYPER"): decoded latents -> images through the user's generator.

When the stimuli were themselves made by a generator (a GAN's faces from known latent vectors, as in HYPER), each
stimulus's latent is the natural decoding target: ridge from visual cortex to the latent, then the same generator
turns the decoded latent into the reconstruction.

- **Latents table** (:func:`read_latents`): stimulus -> vector, as the stimulus set was made. TSV: the first
  column names the stimulus as the trial table's ``stim_id`` does (the events column's value, e.g. ``stim_file``),
  every other column is one dimension, in order. NPZ: arrays ``stim_ids`` ``(n,)`` and ``latents`` ``(n, d)``.
- **Generator** (:func:`load_module`): a TorchScript file (``torch.jit.save``), a ``torch.export`` archive
  (``.pt2``, ``torch.export.save``) or ``package.module:callable`` returning a ``torch.nn.Module``; loaded offline
  from a path, never downloaded. It maps a latent batch ``(n, d)``
  float32 to images ``(n, 3, H, W)`` in [-1, 1] (``output_range="signed"``, a GAN's tanh output) or [0, 1]
  (``"unit"``). Its identity (file, sha256 of the file and of its parameters) goes in every sidecar.
- **Generation** (:func:`generate_images`): batched, on the GPU when given one, with a progress bar.
- **Latents for stimuli that have none** (optional, slower): :func:`invert_latents` optimises a seeded latent per
  image through a differentiable generator (the loss of each image is returned), or :func:`encode_latents` uses
  a user-given encoder (images -> latents).

Everything here is plain torch on arrays and paths. Its card is :class:`LatentCard`; its part of the workflow is
built by :mod:`bids_recon.workflows.generators.latent`.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.evaluate.methods import evaluation_methods
from bids_recon.generate.card import GeneratorCard, RunConfig, register
from bids_recon.params import setting

LOGGER = logging.getLogger("bids_recon.generate.latent")

#: ``desc-`` of the decoding target (the stimuli's latent vectors).
LATENT_TARGET = "latent"
#: ``output_range`` values: what interval the generator's images are in.
OUTPUT_RANGES = ("signed", "unit")
#: What to do for a stimulus without a latent in the table.
MISSING_RULES = ("error", "invert", "encode")
#: ``roi`` value meaning every configured ROI together (all visual voxels).
ALL_ROIS = "visual"
#: Attributes a generator may declare its latent dimension with (checked before any work).
LATENT_DIM_ATTRIBUTES = ("latent_dim", "z_dim")


@dataclass
class LatentParams:
    """Settings of the latent-vector generator (``[workflow.generate.latent]``)."""

    latents: str = setting("stimuli/latents.tsv", doc=(
        "table of every stimulus's latent vector (TSV: first column the stimulus id as the trial table names it, "
        "one column per dimension; or NPZ with stim_ids and latents), relative to the raw dataset unless absolute"))
    generator: str = setting("", doc=(
        "the generator: a TorchScript file or torch.export .pt2 archive (relative to the raw dataset unless "
        "absolute), or package.module:callable returning a torch.nn.Module; latents (n, d) -> images (n, 3, H, W); "
        "required"))
    output_range: str = setting("signed", choices=OUTPUT_RANGES, doc=(
        "interval of the generator's images: signed = [-1, 1] (a GAN's tanh output: PGGAN, StyleGAN), unit = [0, 1]"))
    roi: str = setting(ALL_ROIS, doc=(
        "voxels that feed the decoder: 'visual' = the union of every configured ROI (all visual voxels), an ROI "
        "name, or names joined by '+'"))
    batch_size: int = setting(16, ge=1, doc="latents per generator call")
    output_size: int = setting(0, ge=0, doc=(
        "reconstructions are resized to this many pixels, square (0: the generator's own size; e.g. 256 for a "
        "1024 px GAN keeps memory and files small)"))
    progress: bool = setting(True, doc="progress bars of generation and inversion")
    missing: str = setting("error", choices=MISSING_RULES, doc=(
        "stimuli without a latent in the table: refuse before any work (error), estimate one by optimisation "
        "through the generator (invert; slower), or with the encoder (encode)"))
    encoder: str = setting("", doc=(
        "encoder for missing='encode': TorchScript file or package.module:callable, images (n, 3, H, W) in the "
        "generator's range at its size -> latents (n, d)"))
    inversion_steps: int = setting(300, ge=1, doc="Adam steps per image of the latent inversion (missing='invert')")
    inversion_lr: float = setting(0.05, gt=0, doc="Adam learning rate of the latent inversion")
    inversion_seed: int = setting(0, ge=0, doc="seed of the inversion's starting latents (image i: seed + i)")

    def to_sidecar(self) -> dict[str, Any]:
        """The settings that shape the reconstructions, for sidecars."""
        out = {"OutputRange": self.output_range, "BatchSize": self.batch_size, "MissingLatents": self.missing,
               "OutputSize": self.output_size or "the generator's"}
        if self.missing == "invert":
            out.update(InversionSteps=self.inversion_steps, InversionLearningRate=self.inversion_lr,
                       InversionSeed=self.inversion_seed)
        return out


# ------------------------------------------------------------------------------------------------------------------
# the latents table


@dataclass
class LatentTable:
    """Stimulus -> latent vector, as read from a table.

    Attributes
    ----------
    stim_ids : ndarray of str, shape (n,)
    latents : ndarray, shape (n, d), float32
    path : Path or None
        The file it came from (named in errors).
    sha256 : str
        Digest of the file (empty for a table made in memory).
    """

    stim_ids: np.ndarray
    latents: np.ndarray
    path: Path | None = None
    sha256: str = ""

    @property
    def dim(self) -> int:
        return int(self.latents.shape[1])

    def missing(self, stim_ids: Sequence[str]) -> list[str]:
        """The stimuli of ``stim_ids`` that have no row, in their order."""
        known = set(self.stim_ids.tolist())
        return [s for s in stim_ids if str(s) not in known]

    def select(self, stim_ids: Sequence[str]) -> np.ndarray:
        """Latents of ``stim_ids`` in that order ``(len(stim_ids), d)``; every one must have a row."""
        row = {s: i for i, s in enumerate(self.stim_ids.tolist())}
        absent = self.missing(stim_ids)
        if absent:
            raise BadDataError(f"{len(absent)} stimuli have no latent (first: {absent[0]})", self.path)
        return self.latents[[row[str(s)] for s in stim_ids]]


def _sha256(path: Path) -> str:
    from bids_recon.generate.models import sha256_file

    return sha256_file(path)


def read_latents(path: str | Path) -> LatentTable:
    """Read a latents table (TSV or NPZ, see the module docstring).

    Raises
    ------
    MissingInputError
        The file does not exist (exit 66).
    BadDataError
        Not a table of numbers: no dimension column, a value that is not a finite number (row and column named),
        a stimulus listed twice, unknown extension, missing NPZ arrays (exit 65).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("latents table does not exist (give the stimuli's latent vectors with --latents "
                                "FILE: TSV or NPZ)", path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "stim_ids" not in data or "latents" not in data:
                    raise BadDataError(f"NPZ latents need arrays 'stim_ids' and 'latents' (found: "
                                       f"{', '.join(data.files) or 'none'})", path)
                stim_ids, latents = data["stim_ids"].astype(str), np.asarray(data["latents"])
        except (OSError, ValueError) as exc:
            raise BadDataError(f"cannot read NPZ latents ({exc})", path) from exc
        if latents.ndim != 2 or len(latents) != len(stim_ids):
            raise BadDataError(f"'latents' must be (n_stimuli, d) with one row per 'stim_ids' entry ({len(stim_ids)}),"
                               f" got shape {latents.shape}", path)
        if not np.issubdtype(latents.dtype, np.number) or not np.isfinite(latents).all():
            raise BadDataError("'latents' must hold finite numbers", path)
    elif suffix in (".tsv", ".txt"):
        from bids_recon.io import read_tsv

        try:
            table = read_tsv(path, dtype=str)
        except Exception as exc:  # pandas raises several types for malformed text
            raise BadDataError(f"cannot read the latents TSV ({exc})", path) from exc
        if table.shape[1] < 2:
            raise BadDataError("the latents TSV needs a stimulus column and at least one dimension column", path)
        stim_ids = table.iloc[:, 0].astype(str).to_numpy()
        values = table.iloc[:, 1:]
        numeric = values.apply(lambda column: pd.to_numeric(column, errors="coerce"))
        bad = ~np.isfinite(numeric.to_numpy(dtype=np.float64))
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise BadDataError(f"row {row + 1} ('{stim_ids[row]}'), column '{values.columns[col]}': "
                               f"'{values.iat[row, col]}' is not a finite number", path)
        latents = numeric.to_numpy(dtype=np.float64)
    else:
        raise BadDataError("latents table must be .tsv or .npz", path)
    unique, counts = np.unique(stim_ids, return_counts=True)
    if (counts > 1).any():
        raise BadDataError(f"stimulus '{unique[counts > 1][0]}' has more than one latent", path)
    if len(stim_ids) == 0:
        raise BadDataError("latents table has no rows", path)
    return LatentTable(stim_ids.astype(str), latents.astype(np.float32), path, _sha256(path))


# ------------------------------------------------------------------------------------------------------------------
# loading a generator (or an encoder)


@dataclass
class LoadedModule:
    """A generator or encoder, loaded, with its identity.

    Attributes
    ----------
    module : torch.nn.Module
        In eval mode, on ``device``.
    spec : str
        What was asked for (path or ``package.module:callable``).
    kind : str
        ``torchscript``, ``export`` (a ``torch.export`` ``.pt2`` archive) or ``callable``.
    file : Path
        The model file, or the source file of the callable's module.
    sha256 : str
        Digest of ``file``.
    state_sha256 : str
        Digest of the module's parameters and buffers (names, shapes, values).
    device : str
    """

    module: Any
    spec: str
    kind: str
    file: Path
    sha256: str
    state_sha256: str
    device: str = "cpu"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def declared_dim(self) -> int | None:
        """The latent dimension the module declares (``latent_dim`` or ``z_dim`` attribute), if any."""
        for name in LATENT_DIM_ATTRIBUTES:
            value = getattr(self.module, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    def identity(self, prefix: str = "Generator") -> dict[str, Any]:
        """Sidecar keys: ``<prefix>``, ``<prefix>Kind``, ``<prefix>File``, ``<prefix>SHA256``,
        ``<prefix>StateSHA256``, and what was probed (``<prefix>...`` from :attr:`info`)."""
        return {prefix: self.spec, f"{prefix}Kind": self.kind, f"{prefix}File": str(self.file),
                f"{prefix}SHA256": self.sha256, f"{prefix}StateSHA256": self.state_sha256,
                **{f"{prefix}{k}": v for k, v in self.info.items()}}


def _is_callable_spec(spec: str) -> bool:
    module, sep, attr = spec.partition(":")
    return bool(sep) and bool(attr) and all(part.isidentifier() for part in module.split(".")) \
        and all(part.isidentifier() for part in attr.split("."))


def resolve_spec(spec: str, base_dir: str | Path | None = None) -> tuple[str, Path | str]:
    """What a generator/encoder spec names: ``("callable", "pkg.mod:fn")`` or ``("torchscript", path)``.

    A relative path is taken relative to ``base_dir`` (the raw dataset) when given.
    """
    spec = str(spec).strip()
    if not spec:
        raise UsageError("no generator given: --latent-generator FILE (TorchScript) or package.module:callable")
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if _is_callable_spec(spec) and not path.exists():
        return "callable", spec
    return "torchscript", path


def state_digest(module: Any) -> str:
    """sha256 over the names, shapes, dtypes and values of a module's parameters and buffers."""
    import torch

    digest = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()


def load_module(spec: str, base_dir: str | Path | None = None, device: str = "cpu", what: str = "generator"
                ) -> LoadedModule:
    """Load a generator (or encoder) offline: a TorchScript file, a ``.pt2`` archive, or ``package.module:callable``.

    Parameters
    ----------
    spec : str
        TorchScript file (``torch.jit.save``), ``torch.export`` archive (``.pt2``, ``torch.export.save``), or
        ``package.module:callable`` (called without arguments, it returns a ``torch.nn.Module``; the package must
        be importable).
    base_dir : path, optional
        Where a relative file is found (the raw dataset).
    device : str
        ``cpu`` or ``cuda``.
    what : str
        ``generator`` or ``encoder``, named in messages.

    Raises
    ------
    MissingInputError
        The file does not exist, or the package cannot be imported (exit 66).
    BadDataError
        The file is not an archive torch can load, or the callable fails or returns something else
        than a ``torch.nn.Module`` (exit 65).
    """
    import torch

    kind, target = resolve_spec(spec, base_dir)
    if kind == "callable":
        module_name, _, attr = str(target).partition(":")
        try:
            py_module = importlib.import_module(module_name)
        except ImportError as exc:
            raise MissingInputError(f"{what} '{spec}': cannot import module '{module_name}' ({exc}); install the "
                                    "package or put it on PYTHONPATH") from exc
        factory: Any = py_module
        for part in attr.split("."):
            factory = getattr(factory, part, None)
            if factory is None:
                raise BadDataError(f"{what} '{spec}': module '{module_name}' has no '{attr}'",
                                   getattr(py_module, "__file__", None))
        try:
            module = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
        except Exception as exc:
            raise BadDataError(f"{what} '{spec}': calling '{attr}()' failed ({type(exc).__name__}: {exc})",
                               getattr(py_module, "__file__", None)) from exc
        if not isinstance(module, torch.nn.Module):
            raise BadDataError(f"{what} '{spec}': '{attr}()' returned {type(module).__name__}, expected a "
                               "torch.nn.Module", getattr(py_module, "__file__", None))
        source = Path(getattr(py_module, "__file__", "") or "")
        file_sha = _sha256(source) if source.is_file() else ""
        module = module.to(device)
    else:
        path = Path(target)
        if not path.is_file():
            raise MissingInputError(f"{what} file does not exist (give a TorchScript file saved with "
                                    "torch.jit.save, or package.module:callable)", path)
        exported = path.suffix.lower() == ".pt2"
        try:
            with warnings.catch_warnings():  # recent torch deprecates TorchScript (still loads it) and warns on .pt2
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", UserWarning)
                if exported:
                    module = torch.export.load(str(path)).module().to(device)
                else:
                    module = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # torch raises RuntimeError, ValueError, pickle errors...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            how = ("torch.export.export(model, (example,), dynamic_shapes=...) and torch.export.save" if exported else
                   "torch.jit.script(model) or torch.jit.trace(model, example) and torch.jit.save")
            raise BadDataError(f"{what} file is not a {'torch.export' if exported else 'TorchScript'} archive torch "
                               f"can load ({first}); export it with {how}", path) from exc
        kind = "export" if exported else "torchscript"
        source, file_sha = path.resolve(), _sha256(path)
    try:
        module.eval()
    except (NotImplementedError, RuntimeError):  # exported programs refuse eval(): they are traced in eval mode
        pass
    return LoadedModule(module, str(spec), kind, source, file_sha, state_digest(module), device)


def _images_of(output: Any, n: int, where: str, path: Path) -> Any:
    """The ``(n, 3, H, W)`` float tensor a generator returned (or BadDataError naming the mismatch)."""
    import torch

    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise BadDataError(f"{where}: the generator returned {type(output).__name__}, expected a tensor of images "
                           f"(n, 3, H, W)", path)
    if output.ndim != 4 or output.shape[0] != n or output.shape[1] != 3:
        raise BadDataError(f"{where}: the generator returned shape {tuple(output.shape)}, expected images "
                           f"({n}, 3, H, W)", path)
    if not torch.is_floating_point(output):
        raise BadDataError(f"{where}: the generator returned {output.dtype} images, expected floating point", path)
    return output


def check_recorded(loaded: LoadedModule, identity: dict[str, Any], prefix: str = "Generator") -> None:
    """Refuse (BadDataError, exit 65) a module whose file or parameters differ from the recorded ``identity``."""
    recorded = (identity.get(f"{prefix}SHA256"), identity.get(f"{prefix}StateSHA256"))
    if recorded != (loaded.sha256, loaded.state_sha256):
        raise BadDataError(f"the {prefix.lower()} changed since the workflow was built (sha256 {recorded[0]} / "
                           f"parameters {recorded[1]} recorded, now {loaded.sha256} / {loaded.state_sha256}); run "
                           "again", loaded.file)


def load_recorded(spec: str, identity: dict[str, Any], base_dir: str | Path | None = None, device: str = "cpu",
                  prefix: str = "Generator") -> LoadedModule:
    """Load a generator and check that it is the one ``identity`` recorded (:meth:`LoadedModule.identity`).

    Raises
    ------
    BadDataError
        Its file or parameters changed since the identity was taken (the workflow was built): exit 65.
    """
    loaded = load_module(spec, base_dir, device, prefix.lower())
    check_recorded(loaded, identity, prefix)
    loaded.info.update({k.removeprefix(prefix): v for k, v in identity.items()
                        if k.startswith(prefix) and k.removeprefix(prefix) in ("LatentDimension", "ImageShape")})
    return loaded


def check_generator(generator: LoadedModule, latent_dim: int, output_range: str = "signed", n_probe: int = 2,
                    seed: int = 0) -> tuple[int, int]:
    """Check, before any work, that the generator takes latents of ``latent_dim`` and returns images.

    A declared dimension (``latent_dim``/``z_dim`` attribute) must equal ``latent_dim``; then a batch of
    ``n_probe`` random latents must give finite ``(n_probe, 3, H, W)`` images. Values far outside
    ``output_range`` are logged (a wrong ``--latent-range`` gives washed-out or clipped images).

    Returns
    -------
    tuple of int
        ``(H, W)`` of the images (also recorded in ``generator.info``).

    Raises
    ------
    BadDataError
        Naming the generator file and the mismatch (exit 65).
    """
    import torch

    path = generator.file
    declared = generator.declared_dim
    if declared is not None and declared != latent_dim:
        raise BadDataError(f"the latents have {latent_dim} dimensions but the generator declares latent_dim "
                           f"{declared}", path)
    latents = torch.from_numpy(np.random.default_rng(seed).standard_normal((n_probe, latent_dim)).astype(np.float32))
    try:
        with torch.inference_mode():
            output = generator.module(latents.to(generator.device))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadDataError(f"the generator fails on latents of dimension {latent_dim} (a batch of shape "
                           f"({n_probe}, {latent_dim})): {first}", path) from exc
    images = _images_of(output, n_probe, f"on latents ({n_probe}, {latent_dim})", path)
    if not torch.isfinite(images).all():
        raise BadDataError(f"the generator returned non-finite values on latents ({n_probe}, {latent_dim})", path)
    low, high = (-1.0, 1.0) if output_range == "signed" else (0.0, 1.0)
    outside = float(((images < low - 0.1) | (images > high + 0.1)).float().mean())
    if outside > 0.05:
        LOGGER.warning("%s: %.0f%% of the generator's pixel values are outside [%g, %g] (output range '%s'): check "
                       "--latent-range", path, 100 * outside, low, high, output_range)
    size = (int(images.shape[2]), int(images.shape[3]))
    generator.info.update(LatentDimension=latent_dim, ImageShape=[3, *size])
    return size


def to_unit_range(images: Any, output_range: str) -> Any:
    """Generator images (tensor, ``(n, 3, H, W)``) mapped to [0, 1] and clipped."""
    if output_range not in OUTPUT_RANGES:
        raise UsageError(f"output_range must be one of {', '.join(OUTPUT_RANGES)}, not {output_range!r}")
    x = (images + 1.0) / 2.0 if output_range == "signed" else images
    return x.clamp(0.0, 1.0)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="image")


def generate_images(generator: LoadedModule, latents: np.ndarray, output_range: str = LatentParams.output_range,
                    batch_size: int = LatentParams.batch_size, progress: bool = False,
                    output_size: int = LatentParams.output_size) -> np.ndarray:
    """Images from latents through the generator, in batches.

    Parameters
    ----------
    generator : LoadedModule
        On its device (:func:`load_module`).
    latents : ndarray, shape (n, d)
    output_range : {"signed", "unit"}
        Interval of the generator's images.
    batch_size : int
        Latents per call (memory).
    progress : bool
        Show a progress bar.
    output_size : int
        Resize each batch to ``output_size`` px square (antialiased bilinear), so that memory stays
        ``n x output_size^2``; 0 keeps the generator's size.

    Returns
    -------
    ndarray, shape (n, H, W, 3), float32 in [0, 1]
    """
    import torch
    import torch.nn.functional as F

    latents = np.asarray(latents, dtype=np.float32)
    if latents.ndim != 2:
        raise BadDataError(f"latents must be (n, d), got shape {latents.shape}", generator.file)
    out = []
    with torch.inference_mode(), _progress(len(latents), "Generating images", progress) as bar:
        for start in range(0, len(latents), batch_size):
            batch = torch.from_numpy(latents[start:start + batch_size]).to(generator.device)
            images = _images_of(generator.module(batch), len(batch), f"images {start}..{start + len(batch) - 1}",
                                generator.file)
            images = to_unit_range(images.float(), output_range)
            if output_size and tuple(images.shape[2:]) != (output_size, output_size):
                images = F.interpolate(images, size=(output_size, output_size), mode="bilinear", align_corners=False,
                                       antialias=True).clamp(0.0, 1.0)
            out.append(images.permute(0, 2, 3, 1).cpu().numpy())
            bar.update(len(batch))
    if not out:
        return np.zeros((0, 1, 1, 3), np.float32)
    return np.concatenate(out).astype(np.float32)


def _from_unit_range(images: Any, output_range: str) -> Any:
    return images * 2.0 - 1.0 if output_range == "signed" else images


def _as_generator_input(images: np.ndarray, size: tuple[int, int], output_range: str, device: str) -> Any:
    """Images ``(n, H, W, 3)`` in [0, 1] -> tensor ``(n, 3, h, w)`` at the generator's size and range."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2))).to(device)
    if tuple(x.shape[2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return _from_unit_range(x, output_range)


@dataclass
class InversionResult:
    """Latents estimated by optimisation through the generator.

    Attributes
    ----------
    latents : ndarray, shape (n, d), float32
    losses : ndarray, shape (n,), float32
        Final mean squared error per image (in [0, 1] pixel units, at the generator's size).
    initial_losses : ndarray, shape (n,), float32
        The same at the starting latents.
    """

    latents: np.ndarray
    losses: np.ndarray
    initial_losses: np.ndarray


def invert_latents(generator: LoadedModule, images: np.ndarray, latent_dim: int,
                   output_range: str = LatentParams.output_range, steps: int = LatentParams.inversion_steps,
                   lr: float = LatentParams.inversion_lr, seed: int = LatentParams.inversion_seed,
                   batch_size: int = LatentParams.batch_size, progress: bool = False) -> InversionResult:
    """Estimate each image's latent by gradient descent through a differentiable generator (slower).

    Image ``i`` starts from ``N(0, I)`` latents drawn with seed ``seed + i``; Adam minimises the mean squared error
    between the generated and the seen image (both in [0, 1], at the generator's size) for ``steps`` steps, each
    image on its own (batching changes nothing but speed). Lipton & Tripathi (2017) recover GAN latents this way.

    Parameters
    ----------
    images : ndarray, shape (n, H, W, 3)
        Seen images in [0, 1].
    latent_dim : int
        Dimension of the latents to estimate.

    Raises
    ------
    BadDataError
        The generator is not differentiable (a traced graph without gradients, integer outputs...).
    """
    import torch

    images = np.asarray(images, dtype=np.float32)
    n = len(images)
    if "ImageShape" not in generator.info:
        check_generator(generator, latent_dim, output_range)
    size = generator.info["ImageShape"][1:]
    out_latents = np.zeros((n, latent_dim), np.float32)
    losses, first = np.zeros(n, np.float32), np.zeros(n, np.float32)
    params = [p for p in generator.module.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        with _progress(n, "Inverting latents", progress) as bar:
            for start in range(0, n, batch_size):
                rows = range(start, min(start + batch_size, n))
                target = (_as_generator_input(images[start:start + batch_size], tuple(size), "unit",
                                              generator.device))
                init = np.stack([np.random.default_rng(seed + i).standard_normal(latent_dim) for i in rows])
                z = torch.tensor(init, dtype=torch.float32, device=generator.device, requires_grad=True)
                optimiser = torch.optim.Adam([z], lr=lr)
                for step in range(steps + 1):
                    optimiser.zero_grad()
                    made = to_unit_range(_images_of(generator.module(z), len(rows), "inversion", generator.file)
                                         .float(), output_range)
                    per_image = ((made - target) ** 2).flatten(1).mean(1)
                    if step == 0:
                        first[start:start + len(rows)] = per_image.detach().cpu().numpy()
                    if step == steps:
                        break
                    if not per_image.requires_grad:
                        raise BadDataError("the generator is not differentiable (its output has no gradient with "
                                           "respect to the latent): latents cannot be inverted; give them in the "
                                           "latents table or use an encoder", generator.file)
                    per_image.sum().backward()  # each image's loss depends on its own latent only
                    optimiser.step()
                losses[start:start + len(rows)] = per_image.detach().cpu().numpy()
                out_latents[start:start + len(rows)] = z.detach().cpu().numpy()
                bar.update(len(rows))
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
    return InversionResult(out_latents, losses, first)


def encode_latents(encoder: LoadedModule, images: np.ndarray, size: Sequence[int], latent_dim: int,
                   output_range: str = LatentParams.output_range, batch_size: int = LatentParams.batch_size
                   ) -> np.ndarray:
    """Latents from a user-given encoder: images ``(n, H, W, 3)`` in [0, 1] -> ``(n, latent_dim)``.

    The encoder receives ``(n, 3, h, w)`` images at the generator's size ``(h, w)`` and in its range.

    Raises
    ------
    BadDataError
        The encoder's output is not ``(n, latent_dim)`` finite numbers (exit 65).
    """
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = _as_generator_input(images[start:start + batch_size], tuple(size), output_range, encoder.device)
            try:
                z = encoder.module(x)
            except Exception as exc:
                raise BadDataError(f"the encoder fails on images of shape {tuple(x.shape)}: {exc}", encoder.file) \
                    from exc
            if not isinstance(z, torch.Tensor) or tuple(z.shape) != (len(x), latent_dim) \
                    or not torch.isfinite(z).all():
                shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                raise BadDataError(f"the encoder returned {shape}, expected finite latents ({len(x)}, {latent_dim})",
                                   encoder.file)
            out.append(z.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, latent_dim), np.float32)


# ------------------------------------------------------------------------------------------------------------------
# what a run needs, checked before any work


def resolve_rois(roi: str, names: Sequence[str]) -> list[str]:
    """The ROIs whose union feeds the decoder: ``visual`` = all of ``names``, else one name or ``a+b+...``.

    An ROI actually named ``visual`` is used as is.

    Raises
    ------
    UsageError
        A name that is not a configured ROI (exit 64).
    """
    names = list(names)
    if roi in names:
        return [roi]
    if roi == ALL_ROIS:
        return names
    wanted = [part.strip() for part in roi.split("+") if part.strip()]
    unknown = [w for w in wanted if w not in names]
    if not wanted or unknown:
        which = ", ".join(repr(u) for u in unknown) or "nothing"
        raise UsageError(f"setting 'workflow.generate.latent.roi' = {roi!r}: {which} is not an ROI "
                         f"(ROIs: {', '.join(names)}; '{ALL_ROIS}' = all of them; join names with '+')")
    return wanted


def roi_label(roi: str, names: Sequence[str]) -> str:
    """The ``label-`` of the decoder's voxels: the ROI's name, ``visual`` for all, ``a+b`` -> ``ab``."""
    rois = resolve_rois(roi, names)
    return rois[0] if len(rois) == 1 else (ALL_ROIS if roi == ALL_ROIS else "".join(rois))


@dataclass
class LatentInputs:
    """What :func:`check_latent_inputs` found: the table, the generator, the stimuli lacking a latent.

    Attributes
    ----------
    table : LatentTable
    generator : LoadedModule
    image_size : tuple of int
        ``(H, W)`` of the generator's images.
    missing : list of str
        Stimuli of the run without a latent (estimated by the ``missing`` rule).
    encoder : LoadedModule or None
    """

    table: LatentTable
    generator: LoadedModule
    image_size: tuple[int, int]
    missing: list[str]
    encoder: LoadedModule | None = None


def check_latent_inputs(params: LatentParams, stim_ids: Sequence[str], base_dir: str | Path | None = None,
                        device: str = "cpu") -> LatentInputs:
    """Every check of the latent path that can be made before any work.

    Every stimulus has a latent (or the ``missing`` rule can make one), the generator loads, takes latents of the
    table's dimension and returns images; an encoder returns latents of that dimension.

    Parameters
    ----------
    params : LatentParams
    stim_ids : sequence of str
        The run's stimuli (as the events name them).
    base_dir : path, optional
        The raw dataset (relative ``latents``/``generator``/``encoder`` paths are in it).

    Raises
    ------
    UsageError
        No generator given, or ``missing='encode'`` without an encoder (64).
    MissingInputError
        The latents table or the generator is absent (66).
    BadDataError
        A stimulus without a latent, latents of the wrong dimension for the generator, a generator that does not
        load or returns the wrong shape (65): the message names the file and the mismatch.
    """
    table = read_latents(_relative_to(params.latents, base_dir))
    generator = load_module(params.generator, base_dir, device, "generator")
    size = check_generator(generator, table.dim, params.output_range)
    missing = table.missing([str(s) for s in stim_ids])
    if missing and params.missing == "error":
        raise BadDataError(f"{len(missing)} of the {len(stim_ids)} stimuli have no latent (first: "
                           f"{', '.join(missing[:3])}); add them to the table, or estimate them with "
                           "missing = 'invert' (optimisation through the generator) or 'encode'", table.path)
    if missing and params.missing == "invert":  # a generator without gradients fails here, not after the GLM
        probe = np.random.default_rng(0).uniform(0, 1, (1, *size, 3)).astype(np.float32)
        invert_latents(generator, probe, table.dim, params.output_range, steps=1)
    encoder = None
    if params.missing == "encode":
        if not params.encoder:
            raise UsageError("setting 'workflow.generate.latent.missing' = 'encode' needs an encoder "
                             "(workflow.generate.latent.encoder, --latent-encoder)")
        encoder = load_module(params.encoder, base_dir, device, "encoder")
        probe = np.random.default_rng(0).uniform(0, 1, (2, *size, 3)).astype(np.float32)
        encode_latents(encoder, probe, size, table.dim, params.output_range)
    return LatentInputs(table, generator, size, missing, encoder)


@dataclass
class StimulusLatents:
    """The decoding targets: one latent per stimulus of the run, and where each came from.

    Attributes
    ----------
    stim_ids : ndarray of str, shape (n,)
        Sorted.
    latents : ndarray, shape (n, d), float32
    source : ndarray of str, shape (n,)
        ``table``, ``inverted`` or ``encoded``.
    provenance : dict
        For the sidecar: the table file and its sha256, the rule for missing latents, each inverted stimulus's
        final and initial loss.
    """

    stim_ids: np.ndarray
    latents: np.ndarray
    source: np.ndarray
    provenance: dict[str, Any]


def stimulus_latents(params: LatentParams, stim_ids: Sequence[str], base_dir: str | Path,
                     load_images: Any = None, device: str = "cpu", identity: dict[str, Any] | None = None
                     ) -> StimulusLatents:
    """Every stimulus's latent: from the table, or estimated by the ``missing`` rule (inversion, encoder).

    Parameters
    ----------
    params : LatentParams
    stim_ids : sequence of str
        The run's stimuli.
    base_dir : path
        The raw dataset.
    load_images : callable, optional
        ``(stim_ids, size) -> (n, size, size, 3)`` images in [0, 1]; needed when latents are estimated.
    device : str
    identity : dict, optional
        The generator's recorded identity (:meth:`LoadedModule.identity`): the loaded generator must match it.
    """
    ids = sorted({str(s) for s in stim_ids})
    checked = check_latent_inputs(params, ids, base_dir, device)
    if identity is not None:
        check_recorded(checked.generator, identity)
    table, missing = checked.table, checked.missing
    known = [s for s in ids if s not in set(missing)]
    rows = dict(zip(known, table.select(known), strict=True))
    provenance: dict[str, Any] = {"LatentsFile": str(table.path), "LatentsSHA256": table.sha256,
                                  "LatentDimension": table.dim, "MissingLatents": params.missing,
                                  "LatentsFromTable": len(known), "LatentsEstimated": len(missing)}
    source = {s: "table" for s in known}
    if missing:
        if load_images is None:
            raise UsageError("estimating latents needs the stimuli's images (load_images)")
        height, width = checked.image_size
        images = np.asarray(load_images(missing, max(height, width)), np.float32)
        if params.missing == "invert":
            inverted = invert_latents(checked.generator, images, table.dim, params.output_range,
                                      params.inversion_steps, params.inversion_lr, params.inversion_seed,
                                      params.batch_size, params.progress)
            estimated = inverted.latents
            provenance["Inversion"] = {
                "Description": "latents estimated by Adam on the mean squared pixel error between the generated and "
                               "the seen image (both in [0, 1]) at the generator's size; image i started from N(0, I) "
                               "with seed InversionSeed + i (i in the sorted order of the estimated stimuli)",
                "Steps": params.inversion_steps, "LearningRate": params.inversion_lr, "Seed": params.inversion_seed,
                "FinalLoss": dict(zip(missing, inverted.losses.tolist(), strict=True)),
                "InitialLoss": dict(zip(missing, inverted.initial_losses.tolist(), strict=True))}
            source.update({s: "inverted" for s in missing})
        else:
            estimated = encode_latents(checked.encoder, images, checked.image_size, table.dim, params.output_range,
                                       params.batch_size)
            provenance.update(checked.encoder.identity("Encoder"))
            source.update({s: "encoded" for s in missing})
        rows.update(zip(missing, estimated, strict=True))
    return StimulusLatents(np.asarray(ids), np.stack([rows[s] for s in ids]).astype(np.float32),
                           np.asarray([source[s] for s in ids]), provenance)


def _relative_to(path: str | Path, base_dir: str | Path | None) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def latents_path(params: LatentParams, base_dir: str | Path) -> Path:
    """The latents table: ``params.latents``, relative to the raw dataset unless absolute."""
    return _relative_to(params.latents, base_dir)


# ------------------------------------------------------------------------------------------------------------------
# the card

#: Generator identities found by the preflight, by (generator, latents table, range, dataset).
_IDENTITIES: dict[tuple[str, ...], dict[str, Any]] = {}


def _key(config: RunConfig) -> tuple[str, ...]:
    lat = config.workflow.generate.latent
    return (lat.generator, lat.latents, lat.output_range, str(config.execution.bids_dir))


def generator_identity(config: RunConfig) -> dict[str, Any]:
    """The configured generator's identity (file, sha256, latent dimension, image shape), found once per process.

    Raises the errors of :func:`load_module` (exit 66 when absent, 65 when it does not load or does not fit the
    latents table).
    """
    key = _key(config)
    if key not in _IDENTITIES:
        lat, bids_dir = config.workflow.generate.latent, config.execution.bids_dir
        table = read_latents(latents_path(lat, bids_dir))
        generator = load_module(lat.generator, bids_dir)
        check_generator(generator, table.dim, lat.output_range)
        _IDENTITIES[key] = generator.identity()
    return _IDENTITIES[key]


@register
class LatentCard(GeneratorCard):
    name = "latent"
    params = LatentParams
    summary = ("Dado et al. (2022, HYPER): each stimulus's generator latent (--latents) decoded by ridge, then your "
               "generator (TorchScript or package.module:callable)")
    options_title = "Latent-vector generator (--generator latent)"
    references = ("dado2022",)

    def add_options(self, option: Any, paths: Any) -> None:
        option("--latents", key="latents", type=paths.absolute, metavar="FILE")
        option("--latent-generator", key="generator", type=paths.absolute_if_exists, metavar="FILE|MODULE:CALLABLE")
        option("--latent-range", key="output_range")
        option("--latent-roi", key="roi")
        option("--latent-batch-size", key="batch_size", type=int)
        option("--latent-output-size", key="output_size", type=int)
        option("--missing-latents", key="missing")
        option("--latent-encoder", key="encoder", type=paths.absolute_if_exists, metavar="FILE|MODULE:CALLABLE")
        option("--inversion-steps", key="inversion_steps", type=int)
        option("--inversion-lr", key="inversion_lr", type=float)
        option("--inversion-seed", key="inversion_seed", type=int)

    def label(self, config: RunConfig) -> str:
        """``label-`` of the decoder's voxels."""
        return roi_label(self.settings(config).roi, config.workflow.rois.names)

    def decoders(self, config: RunConfig) -> list[tuple[str, str]]:
        return [(self.label(config), LATENT_TARGET)]

    def check_inputs(self, config: RunConfig, checked: Any) -> None:
        lat = self.settings(config)
        resolve_rois(lat.roi, config.workflow.rois.names)
        found = check_latent_inputs(lat, checked.stim_ids, config.execution.bids_dir)
        _IDENTITIES[_key(config)] = found.generator.identity()

    def prepare(self, config: RunConfig) -> None:
        generator_identity(config)

    def methods(self, config: RunConfig) -> str:
        lat, dec = self.settings(config), config.workflow.decoding
        rois = resolve_rois(lat.roi, config.workflow.rois.names)
        voxels = f"the union of {', '.join(rois)}" if len(rois) > 1 else rois[0]
        missing = {"error": "",
                   "invert": f" Stimuli without a latent got one by optimisation through the generator (Adam, "
                             f"{lat.inversion_steps} steps, learning rate {lat.inversion_lr:g}, pixel mean squared "
                             f"error, seeded starts; the loss of each image is in the targets' sidecar).",
                   "encode": " Stimuli without a latent got one from the encoder."}[lat.missing]
        span = "[-1, 1]" if lat.output_range == "signed" else "[0, 1]"
        evaluation = evaluation_methods(config.workflow.evaluate, 1, "the decoded latent space")
        return (f"Following Dado et al. (2022), the decoding target of each stimulus was the latent vector its image "
                f"was generated from ('{Path(lat.latents).name}').{missing} A decoder ({dec.methods()}) mapped "
                f"{voxels} betas of single training trials to the latents, and decoded repeat-averaged test betas. "
                f"The decoded latents were fed to the generator '{lat.generator}' (images in {span}, batches of "
                f"{lat.batch_size}). Decoded and true latents were compared by their correlation and by 1/(1+MSE) "
                f"(the paper's latent similarity). {evaluation}")


__all__ = ["ALL_ROIS", "LATENT_TARGET", "InversionResult", "LatentCard", "LatentInputs", "LatentParams",
           "LatentTable", "LoadedModule", "check_generator", "check_latent_inputs", "encode_latents",
           "generate_images", "generator_identity", "invert_latents", "latents_path", "load_module", "read_latents",
           "resolve_rois", "resolve_spec", "roi_label", "state_digest", "stimulus_latents", "StimulusLatents",
           "to_unit_range"]
