"""Random-weight stand-ins for the evaluation networks, written where the real weight files go.

For tests, demos and benchmarks on machines without the published weights: every network is the real
architecture (so layer names and feature shapes are the real ones) with random weights, saved under the real
file name in ``TORCH_HOME/hub/checkpoints`` or in the Hugging Face cache layout, so that
:func:`bids_recon.evaluate.networks.load_network` loads it through the same path as the real file. Their sha256
does not match the published prefix, so every result made with them is flagged ``MatchesPublished: false``.
Numbers computed with them mean nothing beyond "the code runs and ranks structured images".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: A CLIP model small enough for tests (``tiny``) or of ViT-L/14's size (``large``, ~1.2 GB, for timings).
CLIP_SIZES = {
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "projection_dim": 12},
    "large": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
              "projection_dim": 768},
}
_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _calibrated(model: Any) -> Any:
    """Batch-norm statistics from a few random images, so that a deep random network's features are not flat."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batch
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 160, 160))
    return model.eval()


def write_random_weights(torch_home: Path, hf_home: Path, clip: str = "tiny", seed: int = 0) -> dict[str, Path]:
    """Write random weights for every evaluation network into ``torch_home`` and ``hf_home``.

    Parameters
    ----------
    torch_home : Path
        The future ``TORCH_HOME``; files go to ``torch_home/hub/checkpoints/<torchvision file name>``.
    hf_home : Path
        The future ``HF_HOME``; CLIP goes to ``hf_home/hub/models--openai--clip-vit-large-patch14``.
    clip : str
        ``tiny`` or ``large`` (:data:`CLIP_SIZES`).
    seed : int
        Seed of the weights (torch's global random state is restored afterwards).

    Returns
    -------
    dict
        Network key -> the written file (CLIP: its snapshot folder).
    """
    import torch
    from torchvision import models
    from transformers import CLIPConfig, CLIPModel

    from bids_recon.evaluate.networks import CLIP_REPO, network_specs

    if clip not in CLIP_SIZES:
        raise ValueError(f"clip must be one of {', '.join(CLIP_SIZES)}, got {clip!r}")
    specs = network_specs()
    checkpoints = Path(torch_home) / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        states = {
            "alexnet": models.alexnet(weights=None).state_dict(),
            "inception_v3": models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(),
            "efficientnet_b1": _calibrated(models.efficientnet_b1(weights=None)).state_dict(),
        }
        # SwAV's checkpoint is a DataParallel state dict ("module.") with a projection head and prototypes, no fc
        resnet = _calibrated(models.resnet50(weights=None)).state_dict()
        states["swav"] = {"module." + k: v for k, v in resnet.items() if not k.startswith("fc.")}
        states["swav"]["module.projection_head.0.weight"] = torch.zeros(8, 2048)
        states["swav"]["module.prototypes.weight"] = torch.zeros(3, 8)
        for name, state in states.items():
            written[name] = checkpoints / specs[name].filename
            torch.save(state, written[name])
        size = dict(CLIP_SIZES[clip])
        projection = size.pop("projection_dim")
        config = CLIPConfig(  # a full CLIP model (vision and text), as the real repository holds
            text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "vocab_size": 64, "max_position_embeddings": 8,
                         "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
            vision_config={**size, "image_size": 224, "patch_size": 14}, projection_dim=projection)
        repo = Path(hf_home) / "hub" / ("models--" + CLIP_REPO.replace("/", "--"))
        snapshot = repo / "snapshots" / _COMMIT
        CLIPModel(config).save_pretrained(snapshot)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(_COMMIT)
        written["clip"] = snapshot
    return written


__all__ = ["CLIP_SIZES", "write_random_weights"]
