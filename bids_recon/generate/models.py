"""Model resolution: the one place that turns ``--model`` into a local diffusers folder and its identity.

``--model`` is either a local diffusers folder (with ``model_index.json``) or a Hugging Face hub id
(``CompVis/stable-diffusion-v1-4``). A hub id is looked up, in order, in ``--model-dir``/``$BIDS_RECON_MODEL_DIR``
(a folder holding models under their id, e.g. ``MODEL_DIR/CompVis/stable-diffusion-v1-4``), in the container's
``$BIDS_RECON_DIFFUSION_MODEL`` folder when its name is the id's last part, and in the Hugging Face cache
(``$HF_HOME``/``$HF_HUB_CACHE``). Nothing is downloaded unless ``allow_download`` is true
(``--allow-download``); a model that cannot be found raises :class:`MissingInputError` (exit 66) with a
message that says how to provide it. Components are loaded with ``from_pretrained(..., local_files_only=True)``.

The identity of a model (id, folder, files, sha256 of every weight file) is recorded in every output that
depends on it and is part of the feature-cache key. Hashes of large weight files are remembered in a small
JSON file keyed by (path, size, mtime), so a 4 GB model is hashed once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids_recon.download import FetchItem, Layout
from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.io import sha256_file, write_json

LOGGER = logging.getLogger("bids_recon.generate.models")

#: Environment variable naming a folder of models stored under their hub id.
MODEL_DIR_ENV = "BIDS_RECON_MODEL_DIR"
#: Environment variable naming the container's model folder (baked or mounted; see the Dockerfile). It is used
#: for a hub id whose last part is the folder's name (``CompVis/stable-diffusion-v1-4`` ->
#: ``/opt/models/stable-diffusion-v1-4``).
DIFFUSION_MODEL_ENV = "BIDS_RECON_DIFFUSION_MODEL"
#: Components of a Stable Diffusion pipeline that bids_recon uses (the safety checker is never loaded).
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
#: Suffixes of weight files (hashed for the identity).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
#: Files fetched from the hub when downloads are allowed.
DOWNLOAD_PATTERNS = ["model_index.json", *(f"{c}/*.json" for c in COMPONENTS), "tokenizer/*.txt",
                     *(f"{c}/*.safetensors" for c in ("unet", "vae", "text_encoder"))]


@dataclass(frozen=True)
class ModelIdentity:
    """What a model is: the id asked for, the folder used and the sha256 of its weights.

    Attributes
    ----------
    model_id : str
        The ``--model`` value.
    path : str
        The resolved local folder.
    files : list of str
        Files of the used components, relative to ``path``.
    weights_sha256 : dict
        Weight file (relative path) -> sha256 hex digest.
    """

    model_id: str
    path: str
    files: list[str] = field(default_factory=list)
    weights_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Short digest of the weights and configurations (the feature-cache key's model part)."""
        text = json.dumps({"weights": self.weights_sha256, "configs": _config_digest(Path(self.path), self.files)},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_sidecar(self) -> dict[str, Any]:
        """The identity as written into JSON sidecars."""
        return {"ModelId": self.model_id, "ModelPath": self.path, "ModelFiles": list(self.files),
                "ModelWeightsSHA256": dict(self.weights_sha256), "ModelKey": self.key}


def _config_digest(root: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        if rel.endswith((".json", ".txt")):
            digest.update(rel.encode())
            try:
                digest.update((root / rel).read_bytes())
            except OSError:
                pass
    return digest.hexdigest()




def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.count("/") > 1


def how_to_provide(spec: str) -> str:
    """The part of an error message that says how to make a model available offline."""
    return (
        f"bids_recon never downloads models unless asked to. Provide '{spec}' by (a) --model pointing at a "
        "local diffusers folder (with model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), "
        f"(b) --model-dir DIR or ${MODEL_DIR_ENV}=DIR where DIR/{spec} is such a folder, (c) in the container, "
        f"the folder mounted (or baked) at ${DIFFUSION_MODEL_ENV} (/opt/models/stable-diffusion-v1-4), "
        "(d) a Hugging Face cache that holds it (HF_HOME or HF_HUB_CACHE, "
        "e.g. filled with `huggingface-cli download " + spec + "` on a machine with internet), or "
        "(e) --allow-download to fetch it now."
    )


def _hub_snapshot(spec: str, allow_download: bool) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a dependency of diffusers
        return None
    try:
        folder = snapshot_download(spec, local_files_only=not allow_download,
                                   allow_patterns=DOWNLOAD_PATTERNS if allow_download else None)
    except Exception as exc:  # LocalEntryNotFoundError, offline mode, repository not found, network errors
        LOGGER.debug("hub lookup of %s failed: %s", spec, exc)
        return None
    return Path(folder)


def find_model_folder(spec: str, model_dir: str | None = None, allow_download: bool = False) -> Path:
    """Return the local diffusers folder of ``spec`` (see the module docstring for the search order).

    Raises
    ------
    MissingInputError
        The model is nowhere to be found (exit 66); the message says how to provide it.
    """
    if not spec:
        raise MissingInputError("no model given (--model)")
    candidate = Path(spec).expanduser()
    if candidate.exists() or _looks_like_path(spec):
        if not (candidate / "model_index.json").is_file():
            raise MissingInputError(f"not a diffusers model folder (no model_index.json). {how_to_provide(spec)}",
                                    candidate)
        return candidate.resolve()
    for root in (model_dir, os.environ.get(MODEL_DIR_ENV)):
        if root and (Path(root) / spec / "model_index.json").is_file():
            return (Path(root) / spec).resolve()
    baked = os.environ.get(DIFFUSION_MODEL_ENV)
    if baked and Path(baked).name == spec.rstrip("/").split("/")[-1] and (Path(baked) / "model_index.json").is_file():
        return Path(baked).resolve()
    folder = _hub_snapshot(spec, allow_download)
    if folder is not None and (folder / "model_index.json").is_file():
        return folder
    where = "downloads allowed but the hub lookup failed" if allow_download else "not found locally"
    raise MissingInputError(f"diffusion model '{spec}' {where}. {how_to_provide(spec)}")


def _component_files(folder: Path) -> list[str]:
    files = ["model_index.json"]
    for comp in COMPONENTS:
        sub = folder / comp
        if sub.is_dir():
            files += sorted(p.relative_to(folder).as_posix() for p in sub.iterdir() if p.is_file()
                            and not p.name.startswith("."))
    return files


def model_identity(spec: str, folder: Path, hash_cache: Path | None = None) -> ModelIdentity:
    """Identity of the model in ``folder``: its files and the sha256 of each weight file.

    Parameters
    ----------
    spec : str
        The ``--model`` value, recorded as the id.
    folder : Path
        The resolved diffusers folder.
    hash_cache : Path, optional
        JSON file remembering digests by (resolved path, size, mtime); read and updated.
    """
    folder = Path(folder)
    files = _component_files(folder)
    known: dict[str, str] = {}
    if hash_cache is not None and Path(hash_cache).is_file():
        try:
            known = json.loads(Path(hash_cache).read_text())
        except (OSError, ValueError):
            known = {}
    weights, changed = {}, False
    for rel in files:
        if not rel.endswith(WEIGHT_SUFFIXES):
            continue
        real = (folder / rel).resolve()
        stat = real.stat()
        memo = f"{real}|{stat.st_size}|{stat.st_mtime_ns}"
        if memo not in known:
            LOGGER.info("hashing %s (%.1f MB)", rel, stat.st_size / 1e6)
            known[memo] = sha256_file(real)
            changed = True
        weights[rel] = known[memo]
    if not weights:
        raise BadDataError("the model folder has no weight files for unet/vae/text_encoder", folder)
    if hash_cache is not None and changed:
        try:
            write_json(Path(hash_cache), known)
        except OSError as exc:  # a read-only cache folder only costs time
            LOGGER.warning("cannot write the model hash cache %s: %s", hash_cache, exc)
    return ModelIdentity(spec, str(folder), files, weights)


@dataclass
class ResolvedModel:
    """A model found on disk: its folder and identity."""

    folder: Path
    identity: ModelIdentity


def resolve_model(spec: str, model_dir: str | None = None, allow_download: bool = False,
                  hash_cache: Path | None = None) -> ResolvedModel:
    """Find ``spec`` on disk (downloading only when allowed) and compute its identity.

    Raises
    ------
    MissingInputError
        The model is not available (exit 66).
    """
    folder = find_model_folder(spec, model_dir, allow_download)
    missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
    if missing:
        raise MissingInputError(f"the model folder lacks {', '.join(missing)}. {how_to_provide(spec)}", folder)
    return ResolvedModel(folder, model_identity(spec, folder, hash_cache))


def torch_dtype_for(device: str) -> Any:
    """float16 on CUDA, float32 on CPU."""
    import torch

    return torch.float16 if device == "cuda" else torch.float32


def load_components(folder: Path, device: str = "cpu", parts: tuple[str, ...] = COMPONENTS) -> dict[str, Any]:
    """Load pipeline components from a resolved folder, offline, on ``device`` (fp16 on CUDA).

    Parameters
    ----------
    folder : Path
        A folder returned by :func:`resolve_model`.
    parts : tuple of str
        Which of ``unet, vae, text_encoder, tokenizer, scheduler`` to load.

    Returns
    -------
    dict
        Component name -> object; models are in eval mode on ``device``. The scheduler is a
        ``DDIMScheduler`` built from the model's scheduler configuration.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    dtype = torch_dtype_for(device)
    folder = str(folder)
    loaders = {
        "unet": lambda: UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype,
                                                             local_files_only=True),
        "vae": lambda: AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, local_files_only=True),
        "text_encoder": lambda: CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", torch_dtype=dtype,
                                                              local_files_only=True),
        "tokenizer": lambda: CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True),
        "scheduler": lambda: DDIMScheduler.from_pretrained(folder, subfolder="scheduler", local_files_only=True),
    }
    out: dict[str, Any] = {}
    for name in parts:
        try:
            out[name] = loaders[name]()
        except OSError as exc:
            raise MissingInputError(f"cannot load the model's {name} ({exc})", folder) from exc
        if hasattr(out[name], "to") and name != "tokenizer":
            out[name] = out[name].to(device).eval()
    if "unet" in out and device == "cuda":
        from diffusers.models.attention_processor import AttnProcessor2_0

        out["unet"].set_attn_processor(AttnProcessor2_0())  # SDPA (flash / memory-efficient kernels)
    return out


def model_downloads(layout: Layout, model: str, group: str) -> list[FetchItem]:
    """The files of hub model ``model`` that bids_recon loads (:data:`DOWNLOAD_PATTERNS`), for ``bids_recon-fetch``.

    One entry per pattern, into the fetch folder's Hugging Face cache; :func:`bids_recon.download.resolve` expands
    the patterns to the repository's files with their sizes and checksums.
    """
    return [FetchItem(group, layout.hf_hub_cache, "hf", f"https://huggingface.co/{model}", repo_id=model,
                      filename=pattern, purpose="diffusion model (generator)") for pattern in DOWNLOAD_PATTERNS]
