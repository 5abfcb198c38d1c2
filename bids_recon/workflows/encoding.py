"""The encoding stage of a participant: voxelwise encoding models from each feature space (Takagi & Nishimoto 2023).

``inputnode``: ``betas`` (z-scored single-trial betas ``.npy``), ``trials``, ``mask_file`` (brain mask),
``roi_files`` (ROI name -> mask), ``features`` (feature space -> ``.npz`` with ``stim_ids`` and ``features``, from
the generator's part). ``outputnode.out_files``: the statmaps, sidecars and ROI table written. Its ``__desc__``
is :func:`methods`. Which feature spaces exist is the generator's (its card's ``feature_spaces``); whether the
stage runs is ``[workflow.encoding] enabled`` (``auto``: the card's ``encoding_default``; see
:meth:`bids_recon.generate.card.GeneratorCard.encoding_enabled`).
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.generate.card import generator_card
from bids_recon.interfaces.encoding import EncodingModels, WriteEncodingMaps
from bids_recon.naming import SubjectOutputs
from bids_recon.params import to_dict
from bids_recon.workflows.betas import grid_sidecar
from bids_recon.workflows.utils import read_outputs


def encoding_spaces(config: Config) -> list[str]:
    """The feature spaces modelled, in the generator's order (empty when the encoding models do not run)."""
    card = generator_card(config.workflow.generate.generator)
    if not card.encoding_enabled(config):
        return []
    offered = list(card.feature_spaces(config))
    chosen = config.workflow.encoding.features
    return [s for s in offered if not chosen or s in chosen]


def encoding_partition(config: Config) -> list[str]:
    """The feature spaces of the joint model whose unique variance is partitioned (empty: none)."""
    spaces = encoding_spaces(config)
    card = generator_card(config.workflow.generate.generator)
    partition = config.workflow.encoding.partition or [s for s in card.encoding_partition if s in spaces]
    return list(partition) if len(partition) > 1 else []


def named_files(files: list[str], names: list[str]) -> dict[str, str]:
    """``{name: file}`` from two lists in the same order (a connection function)."""
    if len(files) != len(names):
        raise ValueError(f"{len(files)} feature files for the feature spaces {names}")
    return dict(zip(names, files, strict=True))


def methods(config: Config) -> str:
    """The methods paragraph of the encoding stage, from its settings."""
    enc = config.workflow.encoding
    offered = generator_card(config.workflow.generate.generator).feature_spaces(config)
    spaces = encoding_spaces(config)
    partition = encoding_partition(config)
    where = ("every voxel of the visual cortex (the union of the ROIs " + ", ".join(config.workflow.rois.names) + ")"
             if enc.mask == "visual" else "every voxel of the brain mask")
    cv = {"gcv": "generalised cross-validation", "loo": "exact leave-one-out cross-validation",
          "kfold": f"{enc.cv_folds}-fold contiguous cross-validation"}[enc.cv]
    null = ("the null of r between independent Gaussian vectors of the test length (Student t)"
            if enc.null == "analytic" else
            f"{enc.n_permutations} permutations of the test stimuli (seed {config.execution.random_seed})")
    text = (
        "Voxelwise encoding models (Takagi & Nishimoto 2023) predicted the betas of " + where + ", averaged over "
        "the repeats of each stimulus, from each feature space: " + "; ".join(f"{s}, {offered[s]}" for s in spaces)
        + ". For each voxel, a ridge regression (features standardised with the training stimuli's mean and sd and "
        f"scaled to unit total variance per space; alpha among {len(enc.alphas)} values ({min(enc.alphas):g} to "
        f"{max(enc.alphas):g}) chosen per voxel by {cv} on the training stimuli) was trained on the training "
        "stimuli and scored by Pearson r between the predicted and measured betas of the held-out test stimuli. "
        f"One-sided p values of r > 0 came from {null}; q values from the Benjamini-Hochberg procedure over voxels, "
        f"per model (significant: q < {enc.fdr:g})."
    )
    if partition:
        weights = "equal weights" + "".join(f" and {f:g} on each space" for f in enc.partition_mixes)
        text += (" Variance was partitioned with a joint model of " + " and ".join(partition) + " (the sum of the "
                 f"spaces' kernels, weighted per voxel among {weights} by the same cross-validation): the unique "
                 "variance of a space is the held-out R² of the joint model minus that of the joint model without "
                 "it.")
    return text


def init_encoding_wf(config: Config, inputs: SubjectInputs, names: SubjectOutputs, device: str,
                     name: str = "encoding_wf") -> pe.Workflow:
    """Build the encoding stage of one participant (see the module docstring)."""
    enc, ex = config.workflow.encoding, config.execution
    card = generator_card(config.workflow.generate.generator)
    spaces = encoding_spaces(config)
    offered = card.feature_spaces(config)
    wf = pe.Workflow(name=name)
    wf.__desc__ = methods(config)
    inputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials", "mask_file", "roi_files", "features"]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_files"]), name="outputnode")
    # mem_gb is what nipype schedules by: at NSD subj01's full size this node took 12.5 GiB RSS (7.0 anonymous) and the
    # diffusion path's evaluate node 11.3 GiB (docs/benchmarks.md): 10 + 12 GB exceed 90 % of a 24 GB machine, so
    # nipype never runs the two side by side there (it clamps an estimate above the machine's memory to it)
    models = pe.Node(EncodingModels(params=to_dict(enc), spaces=spaces, partition=encoding_partition(config),
                                    seed=ex.random_seed, device=device), name="encoding_models", mem_gb=10.0)
    rois = config.workflow.rois
    sources = read_outputs(names, inputs, {roi: rois.atlas_of(roi) for roi in rois.names})
    write = pe.Node(WriteEncodingMaps(
        output_dir=str(Path(ex.output_dir)), names=vars(names), descriptions={s: offered[s] for s in spaces},
        sidecar={"Sources": sources, "Generator": card.name, "Settings": to_dict(enc), **grid_sidecar(config, inputs),
                 "RandomSeed": ex.random_seed},
    ), name="ds_encoding")
    wf.connect([
        (inputnode, models, [("betas", "betas"), ("trials", "trials"), ("mask_file", "mask_file"),
                             ("roi_files", "roi_files"), ("features", "features")]),
        (models, write, [("maps", "maps"), ("summary", "summary"), ("info", "info")]),
        (write, outputnode, [("out_files", "out_files")]),
    ])
    return wf
