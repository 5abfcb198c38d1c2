"""The field's evaluation networks, built from local weight files only.

Every network is the architecture the reference code uses (MindEye's ``Reconstruction_Metrics.py`` and
``final_evaluations.ipynb``, Brain-Diffuser's ``eval_extract_features.py``), built *without* weights and then
given a state dict read from a file on disk:

=============  ==========================================================  =========================================
network        weights file                                                where it must be
=============  ==========================================================  =========================================
alexnet        ``AlexNet_Weights.IMAGENET1K_V1`` (torchvision)             ``$TORCH_HOME/hub/checkpoints/<file>``
inception_v3   ``Inception_V3_Weights.IMAGENET1K_V1`` (torchvision)        ``$TORCH_HOME/hub/checkpoints/<file>``
efficientnet   ``EfficientNet_B1_Weights.IMAGENET1K_V2`` (torchvision)     ``$TORCH_HOME/hub/checkpoints/<file>``
swav           ``swav_800ep_pretrain.pth.tar`` (facebookresearch/swav)     ``$TORCH_HOME/hub/checkpoints/<file>``
clip           ``openai/clip-vit-large-patch14`` (Hugging Face)            ``$HF_HUB_CACHE`` (``$HF_HOME/hub``)
=============  ==========================================================  =========================================

The torchvision file names are read from the installed torchvision's weight enums (``<Enum>.url``), the
folder from :func:`torch.hub.get_dir`, i.e. exactly where ``torchvision.models.alexnet(weights=...)`` and
``torch.hub.load_state_dict_from_url`` look. The SwAV file is the one ``facebookresearch/swav``'s ``hubconf.py``
downloads (``torch.hub.load('facebookresearch/swav:main', 'resnet50')``, which MindEye calls); its state dict
is loaded into torchvision's ResNet-50 with the ``module.`` prefix removed, the projection head and prototypes
ignored, as that ``hubconf.py`` does.

Nothing is downloaded unless ``allow_download=True``. A missing file raises :class:`WeightsNotFoundError`
(exit 66) whose message names the path and says to run ``bids_recon-fetch``. The sha256 of every file used is
returned in :attr:`LoadedNetwork.provenance` (for the metrics sidecar); a torchvision file whose sha256 does not
start with the prefix embedded in its name (torch.hub's ``check_hash`` rule) is flagged there
(``"MatchesPublished": false``) and logged: it is not the published network, so its numbers are not comparable
with published tables.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids_recon.download import FetchItem, Layout, url_name
from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.io import sha256_file

LOGGER = logging.getLogger("bids_recon.evaluate.networks")

#: facebookresearch/swav ``hubconf.py``, function ``resnet50``: the checkpoint MindEye's SwAV metric uses.
SWAV_URL = "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar"
#: The Hugging Face repository of OpenAI's CLIP ViT-L/14 (the model MindEye loads as ``clip.load("ViT-L/14")``).
CLIP_REPO = "openai/clip-vit-large-patch14"
#: Weight files of a CLIP repository, in order of preference.
CLIP_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: The command that fills the caches on a machine with internet.
FETCH_COMMAND = "bids_recon-fetch"
#: Its ``--include`` group of the networks' weights.
FETCH_GROUP = "metrics"


class WeightsNotFoundError(MissingInputError):
    """A network's weight file is not on disk (exit 66); the metric that needs it is skipped."""


@dataclass(frozen=True)
class NetworkSpec:
    """One evaluation network and the file its weights come from.

    Attributes
    ----------
    name : str
        Key of the network (``alexnet``, ``inception_v3``, ``efficientnet_b1``, ``swav``, ``clip``).
    title : str
        Human-readable name.
    kind : str
        ``torchvision`` (a torchvision weight enum), ``swav`` (a torch.hub checkpoint) or ``clip`` (a Hugging
        Face repository).
    source : str
        Download URL (``torchvision``, ``swav``) or Hugging Face repository id (``clip``).
    filename : str
        File name under ``hub/checkpoints`` (``torchvision``, ``swav``); the repository id for ``clip``.
    weights_enum : str
        ``"<Enum>.<member>"`` of torchvision (empty for the others).
    sha256_prefix : str
        Prefix of the file's sha256 embedded in the torchvision file name (empty when none is published).
    approx_size_mib : float or None
        Size recorded by torchvision (``meta["_file_size"]``, MiB), for listings made offline.
    nodes : tuple of str
        Graph nodes read by the metrics (``torchvision.models.feature_extraction`` names).
    reference : str
        Where the reference code builds this network.
    """

    name: str
    title: str
    kind: str
    source: str
    filename: str
    weights_enum: str = ""
    sha256_prefix: str = ""
    approx_size_mib: float | None = None
    nodes: tuple[str, ...] = ()
    reference: str = ""

    def weights_path(self) -> Path:
        """Where the weights must be: ``hub/checkpoints/<file>`` or the CLIP repository's cache folder."""
        if self.kind == "clip":
            return hf_hub_cache_dir() / ("models--" + self.filename.replace("/", "--"))
        return torch_checkpoint_dir() / self.filename


#: torchvision weights of each torchvision network, pinned (MindEye uses ``IMAGENET1K_V1`` for AlexNet and
#: ``DEFAULT`` for InceptionV3 and EfficientNet-B1, which are ``IMAGENET1K_V1`` and ``IMAGENET1K_V2`` in every
#: torchvision since 0.13; pinning keeps a future change of ``DEFAULT`` from changing the metric).
_TORCHVISION = {
    "alexnet": ("AlexNet", "AlexNet_Weights.IMAGENET1K_V1", ("features.4", "features.11")),
    "inception_v3": ("InceptionV3", "Inception_V3_Weights.IMAGENET1K_V1", ("avgpool",)),
    "efficientnet_b1": ("EfficientNet-B1", "EfficientNet_B1_Weights.IMAGENET1K_V2", ("avgpool",)),
}
_MINDEYE = "MedARC-AI/fMRI-reconstruction-NSD src/Reconstruction_Metrics.py; MedARC-AI/MindEyeV2 " \
           "src/final_evaluations.ipynb"


#: What torchvision's weight enums say (url, file size in MB) in the torchvision releases checked against the
#: installed package (tests/evaluate/test_standard_metrics.py compares this table with ``get_weight`` of the installed
#: torchvision): reading it avoids importing torch and torchvision (several seconds) just to know file names, e.g.
#: when a run checks which weights are present. Another torchvision version reads its enums instead.
_TORCHVISION_ENUMS = {
    ("0.29",): {
        "AlexNet_Weights.IMAGENET1K_V1": ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", 233.087),
        "Inception_V3_Weights.IMAGENET1K_V1": (
            "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", 103.903),
        "EfficientNet_B1_Weights.IMAGENET1K_V2": (
            "https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth", 30.136),
    },
}
#: torch.hub's pattern of the sha256 prefix in a weight file's name (``torch.hub.HASH_REGEX``).
_HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")


def _torchvision_enum(enum_name: str) -> tuple[str, float | None]:
    """(url, file size in MB) of a torchvision weights enum value, from the table above or torchvision itself."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    for versions, table in _TORCHVISION_ENUMS.items():
        if version.split("+")[0].rsplit(".", 1)[0] in versions and enum_name in table:
            return table[enum_name]
    from torchvision.models import get_weight

    weights = get_weight(enum_name)
    return weights.url, weights.meta.get("_file_size")


def torch_checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision and torch.hub keep downloaded weights.

    Without importing torch when it is not imported yet: torch.hub's rule (``$TORCH_HOME``, else
    ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``; then ``hub``).
    """
    if "torch" in sys.modules:
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints"
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


url_filename = url_name  # the file name torch.hub.load_state_dict_from_url stores a URL under: its last component


def sha256_prefix_of(filename: str) -> str:
    """The sha256 prefix torch.hub reads from a file name (``alexnet-owt-7be5be79.pth`` -> ``7be5be79``)."""
    match = _HASH_REGEX.search(filename)
    return match.group(1) if match else ""


def network_specs() -> dict[str, NetworkSpec]:
    """The evaluation networks, with torchvision's file names as the installed torchvision's enums give them."""
    specs = {}
    for name, (title, enum_name, nodes) in _TORCHVISION.items():
        url, size = _torchvision_enum(enum_name)
        filename = url_filename(url)
        specs[name] = NetworkSpec(name, title, "torchvision", url, filename, enum_name, sha256_prefix_of(filename),
                                  size, nodes, _MINDEYE)
    specs["swav"] = NetworkSpec("swav", "SwAV ResNet-50", "swav", SWAV_URL, url_filename(SWAV_URL), nodes=("avgpool",),
                                reference=_MINDEYE + "; facebookresearch/swav hubconf.py resnet50")
    specs["clip"] = NetworkSpec("clip", "CLIP ViT-L/14", "clip", CLIP_REPO, CLIP_REPO, nodes=("image_embeds",),
                                reference=_MINDEYE + " (OpenAI clip.load('ViT-L/14').encode_image)")
    return specs


def network_downloads(layout: Layout, users: Mapping[str, str]) -> list[FetchItem]:
    """The weight files of the networks in ``users`` (network -> the metrics that use it), for ``bids_recon-fetch``.

    torchvision and SwAV files go to the fetch folder's ``TORCH_HOME/hub/checkpoints`` (sizes from torchvision's
    table, approximate; torchvision's sha256 prefix), CLIP's configuration and weights to its Hugging Face cache
    (the weights: ``model.safetensors``, else ``pytorch_model.bin``).
    """
    items = []
    for name, spec in network_specs().items():
        if name not in users:
            continue
        purpose = f"{spec.title} ({users[name]})"
        if spec.kind == "clip":
            for filename in ("config.json", CLIP_WEIGHT_FILES[0]):
                items.append(FetchItem(FETCH_GROUP, layout.hf_hub_cache, "hf",
                                       f"https://huggingface.co/{spec.source}/resolve/main/{filename}",
                                       repo_id=spec.source, filename=filename, purpose=purpose, required=True,
                                       alternatives=CLIP_WEIGHT_FILES if filename in CLIP_WEIGHT_FILES else ()))
            continue
        size = int(spec.approx_size_mib * (1 << 20)) if spec.approx_size_mib else None
        items.append(FetchItem(FETCH_GROUP, layout.checkpoints / spec.filename, "url", spec.source, size,
                               "torchvision table (approx.)" if size else "unknown", sha256_prefix=spec.sha256_prefix,
                               purpose=purpose, approx=size is not None))
    return items


def not_found_message(spec: NetworkSpec) -> str:
    """The one line that says a network's weights are missing and how to get them."""
    return f"weights not found at {spec.weights_path()}; run {FETCH_COMMAND}"


# --------------------------------------------------------------------------------------------------------------
# hashing (memoised: a 1.7 GB CLIP file is hashed once per process, or once per hash-cache file)

_HASHES: dict[str, str] = {}


def file_sha256(path: Path, hash_cache: Path | None = None) -> str:
    """sha256 of ``path``, remembered by (resolved path, size, mtime) in memory and in ``hash_cache`` (JSON)."""
    real = Path(path).resolve()
    stat = real.stat()
    key = f"{real}|{stat.st_size}|{stat.st_mtime_ns}"
    if key in _HASHES:
        return _HASHES[key]
    stored: dict[str, str] = {}
    if hash_cache is not None and Path(hash_cache).is_file():
        try:
            stored = json.loads(Path(hash_cache).read_text())
        except (OSError, ValueError):
            stored = {}
    if key not in stored:
        stored[key] = sha256_file(real)
        if hash_cache is not None:
            try:
                Path(hash_cache).write_text(json.dumps(stored, indent=1))
            except OSError as exc:  # a read-only folder only costs time
                LOGGER.warning("cannot write the weights hash cache %s: %s", hash_cache, exc)
    _HASHES[key] = stored[key]
    return stored[key]


# --------------------------------------------------------------------------------------------------------------
# loading


@dataclass
class LoadedNetwork:
    """A network ready to run: ``extract(images)`` maps a preprocessed batch to ``{node: features}``.

    Attributes
    ----------
    spec : NetworkSpec
        What was loaded.
    extract : callable
        ``(n, 3, H, W)`` float tensor on ``device`` -> dict of node name -> ``(n, ...)`` tensor.
    provenance : dict
        ``File``, ``SHA256``, ``Source``, ``PublishedSHA256Prefix``, ``MatchesPublished`` (True/False, or None
        when no checksum is published), ``SizeBytes``: written into the metrics sidecar.
    """

    spec: NetworkSpec
    extract: Callable[[Any], dict[str, Any]]
    provenance: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str) -> Any:
    """``torch.device`` for ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (``"auto"``: CUDA when available)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UsageError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for, but CUDA is not available (use device='cpu')")
    if resolved.type not in ("cpu", "cuda"):
        raise UsageError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return resolved


def _download_checkpoint(spec: NetworkSpec, path: Path) -> None:
    import torch

    LOGGER.info("downloading %s from %s (allow_download=True)", spec.title, spec.source)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(spec.source, str(path), hash_prefix=spec.sha256_prefix or None, progress=False)
    except Exception as exc:  # URLError, RuntimeError (hash mismatch), OSError
        raise WeightsNotFoundError(f"{spec.title}: download from {spec.source} failed ({exc}); "
                                   f"run {FETCH_COMMAND} on a machine with internet", path) from exc


def _read_state_dict(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a torch file
        raise BadDataError(f"cannot read the weights file ({exc}); delete it and run {FETCH_COMMAND}", path) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadDataError("the weights file does not hold a state dict", path)
    return state


def build_architecture(name: str) -> Any:
    """The torchvision architecture of ``name`` with no weights, configured as its pretrained builder would be.

    torchvision's builders change some settings when weights are given; they are repeated here so that a state
    dict from disk gives the same model: InceptionV3 gets ``transform_input=True`` (its weights expect the
    inputs re-normalised from ImageNet statistics to [-1, 1]), ``aux_logits=True`` and ``init_weights=False``.
    """
    from torchvision import models

    if name == "alexnet":
        return models.alexnet(weights=None)
    if name == "inception_v3":
        return models.inception_v3(weights=None, transform_input=True, aux_logits=True, init_weights=False)
    if name == "efficientnet_b1":
        return models.efficientnet_b1(weights=None)
    if name == "swav":
        return models.resnet50(weights=None)
    raise UsageError(f"no torchvision architecture for network {name!r}")


def _feature_extractor(model: Any, nodes: tuple[str, ...]) -> Any:
    import warnings

    from torchvision.models.feature_extraction import create_feature_extractor

    with warnings.catch_warnings():  # InceptionV3: "nodes obtained by tracing the model in eval mode ..."
        warnings.simplefilter("ignore", UserWarning)
        return create_feature_extractor(model.eval(), return_nodes=list(nodes))


def _checkpoint_network(spec: NetworkSpec, device: Any, allow_download: bool, hash_cache: Path | None) -> LoadedNetwork:
    path = spec.weights_path()
    if not path.is_file():
        if not allow_download:
            raise WeightsNotFoundError(f"{spec.title}: {not_found_message(spec)}", None)
        _download_checkpoint(spec, path)
    digest = file_sha256(path, hash_cache)
    matches = digest.startswith(spec.sha256_prefix) if spec.sha256_prefix else None
    if matches is False:
        LOGGER.warning("%s: %s has sha256 %s..., not the published %s...: its metrics are not comparable with "
                       "published tables", spec.title, path, digest[:12], spec.sha256_prefix)
    state = _read_state_dict(path)
    model = build_architecture(spec.name)
    if spec.kind == "swav":
        state = {k.removeprefix("module."): v for k, v in state.items()}
        result = model.load_state_dict(state, strict=False)  # projection_head.*, prototypes.* are ignored
        missing = [k for k in result.missing_keys if not k.startswith("fc.")]
        if missing:
            raise BadDataError(f"not a SwAV ResNet-50 checkpoint: {len(missing)} backbone weights missing "
                               f"(e.g. {missing[0]})", path)
    else:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BadDataError(f"the weights do not fit torchvision's {spec.title} ({str(exc)[:300]})", path) from exc
    extractor = _feature_extractor(model, spec.nodes).to(device).requires_grad_(False)
    provenance = {"Network": spec.title, "File": str(path), "SHA256": digest, "SizeBytes": path.stat().st_size,
                  "Source": spec.source, "WeightsEnum": spec.weights_enum or None,
                  "PublishedSHA256Prefix": spec.sha256_prefix or None, "MatchesPublished": matches,
                  "Nodes": list(spec.nodes), "Reference": spec.reference}
    return LoadedNetwork(spec, extractor, provenance)


def clip_snapshot(repo_id: str = CLIP_REPO, allow_download: bool = False) -> Path:
    """The local snapshot folder of a CLIP repository in the Hugging Face cache (downloading only if allowed).

    Raises
    ------
    WeightsNotFoundError
        The repository (with ``config.json`` and one of :data:`CLIP_WEIGHT_FILES`) is not in the cache.
    """
    from huggingface_hub import snapshot_download

    cache = hf_hub_cache_dir()
    folder: Path | None = None
    try:
        folder = Path(snapshot_download(repo_id, cache_dir=str(cache), local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError and friends
        LOGGER.debug("no local snapshot of %s in %s: %s", repo_id, cache, exc)
    if (folder is None or _clip_weights(folder) is None) and allow_download:
        for weights in CLIP_WEIGHT_FILES:
            try:
                folder = Path(snapshot_download(repo_id, cache_dir=str(cache), allow_patterns=["config.json", weights]))
            except Exception as exc:  # network errors, repository not found
                raise WeightsNotFoundError(f"CLIP: download of {repo_id} failed ({exc}); run {FETCH_COMMAND}",
                                           cache) from exc
            if _clip_weights(folder) is not None:
                break
    if folder is None or not (folder / "config.json").is_file() or _clip_weights(folder) is None:
        spec = NetworkSpec("clip", "CLIP ViT-L/14", "clip", repo_id, repo_id)
        raise WeightsNotFoundError(f"CLIP ViT-L/14: {not_found_message(spec)} "
                                   f"(needs config.json and {' or '.join(CLIP_WEIGHT_FILES)})", None)
    return folder


def _clip_weights(folder: Path) -> Path | None:
    return next((folder / f for f in CLIP_WEIGHT_FILES if (folder / f).is_file()), None)


def _clip_network(spec: NetworkSpec, device: Any, allow_download: bool, hash_cache: Path | None) -> LoadedNetwork:
    folder = clip_snapshot(spec.source, allow_download)  # before importing transformers (~3.5 s) for nothing
    from transformers import AutoConfig, CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    weights = _clip_weights(folder)
    assert weights is not None  # clip_snapshot checked it
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    if getattr(config, "model_type", "") == "clip":  # a full CLIP model: take its vision tower and projection
        vision = config.vision_config
        vision.projection_dim = config.projection_dim
    elif isinstance(config, CLIPVisionConfig):
        vision = config
    else:
        raise BadDataError(f"not a CLIP model (model_type {getattr(config, 'model_type', '?')!r})", folder)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the text tower's weights are "unexpected" for a vision model: expected
    hf_logging.disable_progress_bar()
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(str(folder), config=vision, local_files_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise BadDataError(f"cannot load CLIP's vision model ({str(exc)[:300]})", folder) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    model = model.to(device).eval().requires_grad_(False)

    def extract(pixels: Any) -> dict[str, Any]:
        return {"image_embeds": model(pixel_values=pixels).image_embeds}

    provenance = {"Network": spec.title, "File": str(weights), "SHA256": file_sha256(weights, hash_cache),
                  "SizeBytes": weights.stat().st_size, "Source": f"https://huggingface.co/{spec.source}",
                  "Revision": folder.name, "PublishedSHA256Prefix": None, "MatchesPublished": None,
                  "Nodes": ["image_embeds"], "Reference": spec.reference}
    return LoadedNetwork(spec, extract, provenance)


def load_network(name: str, device: str = "cpu", allow_download: bool = False,
                 hash_cache: Path | None = None) -> LoadedNetwork:
    """Build one evaluation network from its local weights.

    Parameters
    ----------
    name : str
        ``alexnet``, ``inception_v3``, ``efficientnet_b1``, ``swav`` or ``clip``.
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
    allow_download : bool
        Download a missing file (torchvision's URL, SwAV's URL, the Hugging Face hub) instead of failing.
    hash_cache : Path, optional
        JSON file remembering sha256 digests by (path, size, mtime).

    Raises
    ------
    WeightsNotFoundError
        The weights are not on disk (and downloads are not allowed). Exit code 66.
    BadDataError
        The file exists but cannot be read or does not fit the architecture. Exit code 65.
    """
    specs = network_specs()
    if name not in specs:
        raise UsageError(f"unknown network {name!r}; known: {', '.join(specs)}")
    spec = specs[name]
    torch_device = resolve_device(device)
    if spec.kind == "clip":
        return _clip_network(spec, torch_device, allow_download, hash_cache)
    return _checkpoint_network(spec, torch_device, allow_download, hash_cache)


def _local_weights(spec: NetworkSpec) -> Path | None:
    """The weight file of ``spec`` on disk (CLIP: the snapshot's weights), or None (never downloads)."""
    if spec.kind != "clip":
        return spec.weights_path() if spec.weights_path().is_file() else None
    try:
        return _clip_weights(clip_snapshot(spec.source))
    except WeightsNotFoundError:
        return None


def weights_status(names: Iterable[str] | None = None) -> dict[str, str]:
    """For each network (all, or ``names``), ``"present"`` or the not-found line (never loads, never downloads)."""
    specs = network_specs()
    return {name: "present" if _local_weights(specs[name]) is not None else not_found_message(specs[name])
            for name in (specs if names is None else names)}


def weights_fingerprint(names: Iterable[str] | None = None) -> dict[str, str]:
    """For each network, ``path|size|mtime`` of its weight file, or ``absent``: cheap, without hashing.

    A workflow passes it to its evaluation node, so that the node is run again when weights appear (after
    ``bids_recon-fetch``), change or go.
    """
    specs = network_specs()
    out = {}
    for name in specs if names is None else names:
        path = _local_weights(specs[name])
        if path is None:
            out[name] = "absent"
        else:
            stat = path.resolve().stat()
            out[name] = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    return out


__all__ = ["CLIP_REPO", "SWAV_URL", "LoadedNetwork", "NetworkSpec", "WeightsNotFoundError", "build_architecture",
           "clip_snapshot", "file_sha256", "hf_hub_cache_dir", "load_network", "network_downloads", "network_specs",
           "resolve_device", "sha256_prefix_of", "torch_checkpoint_dir", "url_filename", "weights_fingerprint",
           "weights_status"]
