"""Layouts of the simulated dataset: the same BOLD and ground truth, written the way a public dataset is.

``bids_recon-sim OUT --layout bids|nsd|things|bold5000|god|nod``. ``bids`` (the default) is the simulator's own
BIDS layout (images in ``stimuli/``, ``stim_file``, captions TSV). Each other layout is one module here that
registers a :class:`SimLayout`: it names the stimuli as the dataset does, may change the trial schedule (test-only
sessions, one-back repeats, catch trials), writes the events tables in the dataset's columns, its stimulus stores
in their real formats (``nsd_stimuli.hdf5``, nested THINGS folders outside the dataset, COCO caption JSON...) and
renames the fMRIPrep-like outputs as that dataset's derivatives are named (legacy, ``run-1``, ``space-T1w``).
Every layout's ``run_args`` are the ``bids_recon`` flags that run the pipeline on it with its ``--dataset`` preset.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from PIL import Image

from bids_recon.design.confounds import LEGACY_CONFOUNDS
from bids_recon.registry import Registry
from bids_recon.sim.presets import TASK, SimPreset


@dataclass
class LayoutContext:
    """What a layout's :meth:`SimLayout.finish` may read and write (temporary folders, renamed at the end)."""

    root: Path
    bids_dir: Path
    stores_dir: Path
    truth_dir: Path
    preset: SimPreset
    seed: int
    stim: Any
    models: list[Any]
    rng: np.random.Generator
    extra: dict[str, Any] = field(default_factory=dict)
    anat: Any = None

    def published_betas(self) -> list[Any]:
        """Every subject's single-trial betas as a good GLM would publish them (:func:`bids_recon.sim.betas.
        simulated_betas`), also saved as ground truth (``sub-XX/sub-XX_betas.npz``: ``betas`` in the trials'
        order, percent signal change, over the mask's voxels)."""
        from bids_recon.sim.betas import simulated_betas

        sets = []
        for index, model in enumerate(self.models):
            beta_set = simulated_betas(model, self.anat.affine, np.random.default_rng([self.seed, 5, index]))
            np.savez_compressed(self.truth_dir / f"sub-{model.subject}" / f"sub-{model.subject}_betas.npz",
                                betas=np.concatenate(beta_set.betas), sessions=np.asarray(beta_set.sessions))
            sets.append(beta_set)
        return sets

    @property
    def fmriprep_dir(self) -> Path:
        return self.bids_dir / "derivatives" / "fmriprep"

    @property
    def trials(self) -> pd.DataFrame:
        """Every subject's trials (the ground truth's rows), in order."""
        return pd.concat([m.trials for m in self.models], ignore_index=True)


class SimLayout:
    """How a simulated dataset is laid out (subclass it, then decorate with :func:`register`)."""

    name: ClassVar[str] = "bids"
    summary: ClassVar[str] = "the simulator's BIDS layout: stim_file in stimuli/, captions.tsv"
    #: SimPreset fields this layout changes (its design needs them: sessions, sizes)
    overrides: ClassVar[dict[str, Any]] = {}
    #: NSD: the raw dataset is OUT/<bids_subdir>, OUT being the download root
    bids_subdir: ClassVar[str] = ""
    #: the test presentations go to the last runs only (a test session)
    test_only_runs: ClassVar[int] = 0
    #: images (and captions) written into the raw dataset's stimuli/, as the simulator always did
    bids_stimuli: ClassVar[bool] = False
    #: the task label of every run (see :meth:`task`)
    task_label: ClassVar[str] = TASK
    #: session label of session ``i`` (0-based): ``session_format.format(i + 1)``
    session_format: ClassVar[str] = "{:02d}"
    #: subject label of subject ``i`` (0-based)
    subject_format: ClassVar[str] = "{:02d}"

    def subject_label(self, index: int) -> str:
        return self.subject_format.format(index + 1)

    def session_label(self, index: int) -> str:
        return self.session_format.format(index + 1)

    def task(self, session: str) -> str:
        """The task of a session's runs."""
        return self.task_label

    def make_stimuli(self, rng: np.random.Generator, preset: SimPreset) -> Any:
        """The stimulus set (a :class:`~bids_recon.sim.stimuli.StimulusSet`): the simulator's objects by default."""
        from bids_recon.sim.stimuli import make_stimuli

        return make_stimuli(rng, preset.n_train, preset.n_test, preset.n_test_repeats, preset.image_size)

    def stimulus_features(self, stim: Any) -> np.ndarray | None:
        """Per-stimulus features ``(n_stimuli, n_features)`` that higher-visual voxels respond to linearly
        (``None``: the objects' category and size)."""
        return None

    def stimulus_names(self, table: pd.DataFrame, rng: np.random.Generator) -> list[str]:
        """How the events name each stimulus (``stim_file`` of the ground truth's tables)."""
        return list(table["stim_file"])

    def edit_schedule(self, trials: pd.DataFrame, table: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Change the trials before the BOLD is simulated (one-back repeats, catch trials: a ``kind`` column)."""
        return trials

    def events(self, trials: pd.DataFrame, preset: SimPreset, n_vols: int) -> pd.DataFrame | None:
        """The events table of one run in the dataset's columns (``None``: the simulator's own)."""
        return None

    def finish(self, ctx: LayoutContext) -> None:
        """Write the stores, rename the outputs (after every run is written)."""

    def run_args(self, bids_dir: Path, stores_dir: Path) -> list[str]:
        """``bids_recon`` flags (besides the positional ones and ``-d fmriprep=``) that run on this layout."""
        return []


#: Registered layouts by name (one instance each).
LAYOUTS: dict[str, SimLayout] = Registry("simulation layout")
#: Class decorator: add a layout to :data:`LAYOUTS`.
register = LAYOUTS.register


def get_layout(name: str) -> SimLayout:
    """The layout registered as ``name`` (UsageError naming the known ones)."""
    return LAYOUTS.named(name)


@register
class BidsLayout(SimLayout):
    bids_stimuli = True

    def finish(self, ctx: LayoutContext) -> None:
        """GLMsingle's outputs of every subject in ``derivatives/GLMsingle/`` (``--betas glmsingle=``)."""
        from bids_recon.sim.betas import write_glmsingle

        for beta_set in ctx.published_betas():
            write_glmsingle(ctx.bids_dir / "derivatives" / "GLMsingle", beta_set)


# ------------------------------------------------------------------------------------------------------------------
# helpers shared by the layouts


def save_image(image: np.ndarray, path: Path, mode: str = "RGB", quality: int = 95) -> None:
    """Write one stimulus (float RGB in [0, 1]) as JPEG or PNG by the extension; ``mode`` L or CMYK converts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), mode="RGB")
    if mode != "RGB":
        img = img.convert(mode)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    img.save(path, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))


def coco_captions_file(path: Path, captions: dict[int, list[str]], year: str) -> None:
    """A COCO-style captions JSON (``info``, ``images``, ``annotations``) for the given image ids."""
    images, annotations = [], []
    for coco_id, texts in sorted(captions.items()):
        images.append({"id": int(coco_id), "file_name": f"{int(coco_id):012d}.jpg", "width": 640, "height": 480})
        for text in texts:
            annotations.append({"image_id": int(coco_id), "id": len(annotations) + 1, "caption": text})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"info": {"description": f"COCO {year} captions (simulated by bids_recon-sim)"},
                                "licenses": [], "images": images, "annotations": annotations}))


def captions_by_stimulus(stim: Any) -> dict[str, list[str]]:
    """The simulator's captions per stimulus name (``stim_file`` as the layout named it)."""
    names = dict(zip(stim.table["stim_id"].map(lambda i: f"stim-{int(i):04d}.png"), stim.table["stim_file"],
                     strict=True))
    out: dict[str, list[str]] = {}
    for original, caption in zip(stim.captions["stim_file"], stim.captions["caption"], strict=True):
        out.setdefault(names.get(original, original), []).append(caption)
    return out


def drop_bids_stimuli(bids_dir: Path) -> None:
    """Remove the simulator's stimuli/ and its events sidecar (the dataset keeps its images elsewhere)."""
    shutil.rmtree(bids_dir / "stimuli", ignore_errors=True)
    (bids_dir / f"task-{TASK}_events.json").unlink(missing_ok=True)


def write_events_sidecar(bids_dir: Path, task: str, columns: dict[str, str]) -> None:
    """``task-<task>_events.json`` describing the dataset's own events columns."""
    (bids_dir / f"task-{task}_events.json").write_text(
        json.dumps({k: {"Description": v} for k, v in columns.items()}, indent=2) + "\n")


def rename_fmriprep(fmriprep_dir: Path, *, space: str = "T1w", unpadded_runs: bool = False, legacy: bool = False,
                    keep: tuple[str, ...] = ("preproc", "mask", "boldref", "confounds", "sidecars"),
                    description: bool = True) -> None:
    """Rename the simulator's fMRIPrep-like outputs as another fMRIPrep version names them.

    Parameters
    ----------
    space : str
        The ``space-`` label written (the data are the simulator's grid whatever the label: the simulated T1w
        space coincides with the template).
    unpadded_runs : bool
        ``run-1`` for the raw ``run-01`` (fMRIPrep 20.2.x).
    legacy : bool
        fMRIPrep 1.0/1.1 names: ``_bold_space-T1w_preproc``, ``_bold_space-T1w_brainmask``, ``_bold_confounds``
        with CamelCase confound columns, no sidecars, no boldref.
    keep : tuple of str
        Which outputs stay (the others are deleted: NOD's public copy has no masks nor boldrefs).
    description : bool
        Keep ``dataset_description.json`` (legacy and trimmed copies have none).
    """
    import re

    from bids_recon.sim.writers import SPACE

    for path in sorted(fmriprep_dir.rglob("*")):
        if not path.is_file() or path.parent.name != "func":
            continue
        name = path.name
        kind = ("preproc" if "desc-preproc_bold" in name else "mask" if "desc-brain_mask" in name else
                "boldref" if "_boldref" in name else "confounds" if "desc-confounds" in name else "other")
        sidecar = name.endswith(".json")
        if kind not in keep or (sidecar and "sidecars" not in keep) or (legacy and (sidecar or kind == "boldref")):
            path.unlink()
            continue
        new = name.replace(f"_space-{SPACE}_res-2", f"_space-{space}")
        if unpadded_runs:
            new = re.sub(r"_run-0*(\d+)", r"_run-\1", new)
        if legacy:
            new = (new.replace(f"_space-{space}_desc-preproc_bold", f"_bold_space-{space}_preproc")
                   .replace(f"_space-{space}_desc-brain_mask", f"_bold_space-{space}_brainmask")
                   .replace("_desc-confounds_timeseries", "_bold_confounds"))
        path.rename(path.with_name(new))
        if legacy and kind == "confounds" and not sidecar:
            legacy_confounds(path.with_name(new))
    if not description:
        (fmriprep_dir / "dataset_description.json").unlink(missing_ok=True)


#: Current fMRIPrep confound names -> fMRIPrep 1.0's (the names the confounds reader renames back).
LEGACY_NAMES = {current: legacy for legacy, current in LEGACY_CONFOUNDS.items()}


def legacy_confounds(path: Path) -> None:
    """Rewrite a confounds table with fMRIPrep 1.0's columns (CSF, WhiteMatter, ..., Cosine00, X ... RotZ)."""
    table = pd.read_csv(path, sep="\t")
    renamed = {c: LEGACY_NAMES[c] for c in table.columns if c in LEGACY_NAMES}
    renamed.update({c: "Cosine" + c[len("cosine"):] for c in table.columns if c.startswith("cosine")})
    keep = list(renamed)
    table[keep].rename(columns=renamed).to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.8g")


def visual_rois(anat: Any) -> dict[str, np.ndarray]:
    """The simulated template's visual areas (boolean, its grid): ``early`` and ``higher`` (the atlas labels the
    default ROIs take), for layouts that ship ROI masks as their dataset does."""
    return {"early": np.isin(anat.atlas, anat.early_labels), "higher": np.isin(anat.atlas, anat.higher_labels)}


def hemispheres(anat: Any) -> dict[str, np.ndarray]:
    """``LH`` and ``RH``: the template's voxels left (x < 0, RAS) and right of the midline."""
    x = (np.indices(anat.atlas.shape).reshape(3, -1).T @ anat.affine[:3, :3].T + anat.affine[:3, 3])[:, 0]
    left = (x < 0).reshape(anat.atlas.shape)
    return {"LH": left, "RH": ~left}


def split_by(mask: np.ndarray, axis: int, parts: int) -> list[np.ndarray]:
    """``mask`` cut into ``parts`` pieces of about equal size along ``axis`` (by the voxels' rank on it)."""
    index = np.argwhere(mask)
    order = np.argsort(index[:, axis], kind="stable")
    out = []
    for chunk in np.array_split(order, parts):
        piece = np.zeros(mask.shape, dtype=bool)
        piece[tuple(index[chunk].T)] = True
        out.append(piece)
    return out


def save_mask(mask: np.ndarray, affine: np.ndarray, path: Path, upsample: int = 1) -> Path:
    """Write a 0/1 mask (uint8 NIfTI); ``upsample`` > 1 writes it on a grid that many times finer (the same
    region, as masks drawn on an anatomical image are)."""
    import nibabel as nib

    data, out_affine = mask.astype(np.uint8), np.asarray(affine, dtype=float).copy()
    if upsample > 1:
        for axis in range(3):
            data = np.repeat(data, upsample, axis=axis)
        out_affine[:3, :3] = affine[:3, :3] / upsample
        out_affine[:3, 3] = affine[:3, 3] - np.diag(affine)[:3] * (upsample - 1) / (2 * upsample)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, out_affine), path)
    return path


def write_user_rois(ctx: LayoutContext, folder: Path) -> None:
    """Each subject's ``sub-XX_desc-earlyvisual_mask.nii.gz`` and ``..._desc-highervisual_mask.nii.gz`` on the BOLD
    grid: the ROI masks a user gives with ``--roi-mask`` where the dataset ships none in the BIDS tree."""
    rois = visual_rois(ctx.anat)
    for model in ctx.models:
        for name, key in (("earlyvisual", "early"), ("highervisual", "higher")):
            save_mask(rois[key], ctx.anat.affine, folder / f"sub-{model.subject}_desc-{name}_mask.nii.gz")


def user_roi_args(folder: Path) -> list[str]:
    """The ``--roi-mask`` flags of :func:`write_user_rois`'s masks."""
    return [flag for name in ("earlyvisual", "highervisual") for flag in
            ("--roi-mask", f"{name}={folder / f'sub-{{subject}}_desc-{name}_mask.nii.gz'}")]


def synset_number(category_index: int) -> int:
    """A made-up ImageNet synset number per simulated category (n02000000, n02001111, ...)."""
    return 2_000_000 + 1111 * int(category_index)


def write_synset_words(path: Path, categories: list[str]) -> None:
    """ImageNet's ``synset_words.txt`` format for the simulated categories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"n{synset_number(i):08d} {name}, {name} object\n" for i, name in enumerate(categories)))


def _import_all() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all()

__all__ = ["LAYOUTS", "LayoutContext", "SimLayout", "get_layout", "register"]
