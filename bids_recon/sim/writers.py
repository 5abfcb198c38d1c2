"""Writers of the simulated raw BIDS dataset, fMRIPrep derivatives, TemplateFlow folder and ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon import __version__
from bids_recon.sim.anatomy import EARLY_VISUAL, HIGHER_VISUAL, Anatomy, label_table_text
from bids_recon.sim.model import CONFOUND_BASE, HRF_DT, SubjectModel
from bids_recon.sim.presets import TASK, SimPreset
from bids_recon.sim.stimuli import BACKGROUNDS, CATEGORIES, COLOURS, StimulusSet, save_pngs

BIDS_VERSION = "1.10.0"
FMRIPREP_VERSION = "24.1.1"
SPACE = "MNI152NLin2009cAsym"
SIM_NAME = "bids_recon-sim"


def write_json(path: Path, obj: object) -> None:
    """Write pretty JSON (sorted as given, trailing newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_tsv(path: Path, df: pd.DataFrame, float_format: str = "%.6g") -> None:
    """Write a BIDS TSV (tab-separated, ``n/a`` for missing values, no index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format=float_format, lineterminator="\n")


def save_nifti(
    data: np.ndarray, affine: np.ndarray, path: Path, tr: float | None = None, code: int = 4
) -> None:
    """Save an image with its dtype unchanged, mm/s units, the TR in pixdim[4] and q/sform codes.

    Parameters
    ----------
    data : ndarray, shape (nx, ny, nz) or (nx, ny, nz, n_vols)
        Voxel values (int16 data are written unscaled).
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine.
    path : Path
        Destination (``.nii.gz``).
    tr : float, optional
        Repetition time of a 4D image.
    code : int
        NIfTI xform code (4 = MNI152, 1 = scanner).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None and data.ndim == 4:
        img.header.set_zooms((*img.header.get_zooms()[:3], float(tr)))
    img.set_qform(affine, code=code)
    img.set_sform(affine, code=code)
    nib.save(img, path)


def to_volume(values: np.ndarray, mask: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Put voxel values back into the grid.

    Parameters
    ----------
    values : ndarray, shape (n_vox,) or (n_vols, n_vox)
        Values over ``np.flatnonzero(mask)``.
    mask : ndarray, shape (nx, ny, nz), bool
        Brain mask.
    dtype : type
        Output dtype (values are rounded for integer types).

    Returns
    -------
    ndarray, shape (nx, ny, nz) or (nx, ny, nz, n_vols)
        Zero outside the mask.
    """
    vox = np.flatnonzero(mask)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    if values.ndim == 1:
        out = np.zeros(mask.size, dtype=dtype)
        out[vox] = values
        return out.reshape(mask.shape)
    out = np.zeros((values.shape[0], mask.size), dtype=dtype)
    out[:, vox] = values
    return np.moveaxis(out.reshape(values.shape[0], *mask.shape), 0, -1)


def block_mean(data: np.ndarray, f: int = 2) -> np.ndarray:
    """Average ``f`` x ``f`` x ``f`` blocks of a 4D image (the simulated native acquisition grid)."""
    nx, ny, nz = (s // f * f for s in data.shape[:3])
    d = data[:nx, :ny, :nz].astype(np.float32)
    d = d.reshape(nx // f, f, ny // f, f, nz // f, f, -1).mean(axis=(1, 3, 5))
    return d


def stem(subject: str, session: str | None, run: str, task: str = TASK) -> str:
    """``sub-XX_ses-YY_task-images_run-ZZ`` (no ``ses-`` entity when ``session`` is None)."""
    if session is None:
        return f"sub-{subject}_task-{task}_run-{run}"
    return f"sub-{subject}_ses-{session}_task-{task}_run-{run}"


def func_dir(root: Path, subject: str, session: str | None) -> Path:
    """``root/sub-XX/ses-YY/func`` (``root/sub-XX/func`` when ``session`` is None)."""
    return root / f"sub-{subject}" / (f"ses-{session}" if session is not None else "") / "func"


# --------------------------------------------------------------------------------------------------
# raw BIDS


def write_raw_toplevel(
    bids_dir: Path, preset: SimPreset, seed: int, stim: StimulusSet, subjects: list[str], rng: np.random.Generator,
    write_stimuli: bool = True, design: str | None = None,
) -> None:
    """dataset_description.json, README, participants, events JSON, stimuli/ of the raw dataset.

    ``design`` replaces the README's paragraph on what the subjects saw (the shapes' designs differ).
    """
    write_json(
        bids_dir / "dataset_description.json",
        {
            "Name": f"bids_recon simulated natural-image fMRI dataset (preset {preset.name}, seed {seed})",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["bids_recon developers", "bids_recon-sim (simulator)"],
            "GeneratedBy": [
                {
                    "Name": SIM_NAME,
                    "Version": __version__,
                    "Description": f"bids_recon.sim.simulate_dataset(preset={preset.name!r}, seed={seed})",
                }
            ],
        },
    )
    n_runs = preset.n_sessions * preset.n_runs
    if design is None:
        design = f"""{len(subjects)} subjects each saw {preset.n_stimuli} synthetic images (a coloured object of one of
{len(CATEGORIES)} categories on a textured background): {preset.n_train} training images once and
{preset.n_test} test images {preset.n_test_repeats} times, in {n_runs} runs ({preset.n_sessions} session(s) x
{preset.n_runs} runs) of task "{TASK}" (TR {preset.tr} s, {preset.stim_duration:g} s per image, one image
every {preset.soa:g} s, about {round(preset.blank_fraction * 100)}% of the slots blank). The images are in
stimuli/ (events.tsv column stim_file), with 2-3 captions per image in stimuli/captions.tsv."""
    (bids_dir / "README").write_text(
        f"""# Simulated image-viewing fMRI dataset

This dataset is SIMULATED. It was written by {SIM_NAME} {__version__} (the simulator of bids_recon) with
preset "{preset.name}" and seed {seed}. No person was scanned.

{design}

Preprocessed, fMRIPrep-like derivatives (in a simulated {SPACE} 2 mm grid) are in derivatives/fmriprep.
The raw BOLD files are the same time series on a coarser (4 mm) "native" grid. The ground truth (voxel
responses, receptive fields, HRFs, noise levels) is in the sibling folder <this folder>_groundtruth, and
a TemplateFlow folder with the matching atlas in <this folder>_templateflow.
"""
    )
    ages = rng.integers(20, 40, len(subjects))
    sexes = rng.choice(["F", "M"], len(subjects))
    write_tsv(
        bids_dir / "participants.tsv",
        pd.DataFrame({"participant_id": [f"sub-{s}" for s in subjects], "age": ages, "sex": sexes}),
    )
    write_json(
        bids_dir / "participants.json",
        {
            "participant_id": {"Description": "Unique participant identifier"},
            "age": {"Description": "Age of the (simulated) participant", "Units": "year"},
            "sex": {
                "Description": "Sex of the (simulated) participant",
                "Levels": {"F": "female", "M": "male"},
            },
        },
    )
    write_json(
        bids_dir / f"task-{TASK}_events.json",
        {
            "onset": {"Description": "Image onset relative to the first volume", "Units": "s"},
            "duration": {"Description": "Time the image was on the screen", "Units": "s"},
            "trial_type": {
                "Description": "Type of trial",
                "Levels": {"image": "an image was shown (every row)"},
            },
            "stim_file": {"Description": "The image shown, relative to the stimuli/ folder"},
        },
    )
    if not write_stimuli:  # a dataset layout writes its own stores (bids_recon.sim.layouts)
        return
    stim_dir = bids_dir / "stimuli"
    stim_dir.mkdir(parents=True, exist_ok=True)
    save_pngs(stim.images, list(stim.table["stim_file"]), stim_dir)
    write_tsv(stim_dir / "captions.tsv", stim.captions)


def write_raw_run(
    bids_dir: Path, preset: SimPreset, subject: str, session: str | None, run: str, native: np.ndarray,
    native_affine: np.ndarray, events: pd.DataFrame, task: str = TASK, table: pd.DataFrame | None = None,
) -> None:  # fmt: skip
    """BOLD (native grid), sidecar and events of one raw run (``table``: the events as a layout writes them;
    ``session`` None: no ``ses-`` level)."""
    func = func_dir(bids_dir, subject, session)
    s = stem(subject, session, run, task)
    save_nifti(native, native_affine, func / f"{s}_bold.nii.gz", tr=preset.tr, code=1)
    write_json(
        func / f"{s}_bold.json",
        {
            "RepetitionTime": preset.tr,
            "TaskName": task,
            "TaskDescription": "Passive viewing of natural-like images (simulated data).",
            "Instructions": "Look at the images and keep your eyes on the central fixation dot.",
        },
    )
    ev = table if table is not None else pd.DataFrame(
        {
            "onset": events["onset"].to_numpy(float),
            "duration": events["duration"].to_numpy(float),
            "trial_type": "image",
            "stim_file": events["stim_file"].to_numpy(),
        }
    )
    write_tsv(func / f"{s}_events.tsv", ev, float_format="%.3f")


# --------------------------------------------------------------------------------------------------
# fMRIPrep derivatives


def write_fmriprep_toplevel(fmriprep_dir: Path, bids_dir: Path) -> None:
    """dataset_description.json of the fMRIPrep-like derivatives."""
    write_json(
        fmriprep_dir / "dataset_description.json",
        {
            "Name": "fMRIPrep - fMRI PREProcessing workflow (simulated outputs)",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [
                {"Name": "fMRIPrep", "Version": FMRIPREP_VERSION, "CodeURL": "https://github.com/nipreps/fmriprep"},
                {
                    "Name": SIM_NAME,
                    "Version": __version__,
                    "Description": "simulated the data as fMRIPrep would have written them",
                },
            ],
            "SourceDatasets": [{"URL": "../..", "Version": "simulated"}],
            "DatasetLinks": {"raw": "../.."},
            "HowToAcknowledge": "These outputs were simulated; do not cite fMRIPrep for them.",
        },
    )


def _resolution(preset: SimPreset) -> str:
    return (
        f"{preset.voxel_size:g} mm isotropic (simulated {SPACE} grid "
        f"{'x'.join(str(g) for g in preset.grid)})"
    )


def write_fmriprep_run(
    fmriprep_dir: Path, preset: SimPreset, model: SubjectModel, session: str | None, run: str, bold: np.ndarray,
    affine: np.ndarray, task: str = TASK, confounds: pd.DataFrame | None = None,
) -> None:  # fmt: skip
    """Preprocessed BOLD, brain mask, boldref and confounds of one run.

    Parameters
    ----------
    session : str or None
        Session label (None: no ``ses-`` level).
    bold : ndarray, shape (nx, ny, nz, n_vols), int16
        Preprocessed BOLD in the template grid.
    confounds : DataFrame, optional
        The confounds table to write (default: the model's for ``(session, run)``).
    """
    func = func_dir(fmriprep_dir, model.subject, session)
    s = stem(model.subject, session, run, task)
    raw_rel = f"bids:raw:{func_dir(Path(), model.subject, session).as_posix()}/{s}_bold.nii.gz"
    pre = f"{s}_space-{SPACE}_res-2"
    save_nifti(bold, affine, func / f"{pre}_desc-preproc_bold.nii.gz", tr=preset.tr)
    write_json(
        func / f"{pre}_desc-preproc_bold.json",
        {
            "RepetitionTime": preset.tr,
            "TaskName": task,
            "SkullStripped": False,
            "Resolution": _resolution(preset),
            "Sources": [raw_rel],
            "StartTime": 0.0,
        },
    )
    save_nifti(model.mask.astype(np.uint8), affine, func / f"{pre}_desc-brain_mask.nii.gz")
    write_json(
        func / f"{pre}_desc-brain_mask.json",
        {"Type": "Brain", "RawSources": [raw_rel], "Resolution": _resolution(preset)},
    )
    ref = bold.mean(axis=-1, dtype=np.float64).astype(np.float32)
    save_nifti(ref, affine, func / f"{pre}_boldref.nii.gz")
    write_json(func / f"{pre}_boldref.json", {"Resolution": _resolution(preset), "Sources": [raw_rel]})
    conf = model.confounds[(session, run)] if confounds is None else confounds
    write_tsv(func / f"{s}_desc-confounds_timeseries.tsv", conf, float_format="%.8g")
    meta: dict[str, dict[str, str]] = {}
    descriptions = {
        "global_signal": "Mean BOLD signal in the brain mask",
        "csf": "Mean BOLD signal in cerebrospinal fluid",
        "white_matter": "Mean BOLD signal in white matter",
        "trans_x": "Translation along x (mm)",
        "trans_y": "Translation along y (mm)",
        "trans_z": "Translation along z (mm)",
        "rot_x": "Rotation around x (rad)",
        "rot_y": "Rotation around y (rad)",
        "rot_z": "Rotation around z (rad)",
    }
    for col in conf.columns:
        base = next((b for b in CONFOUND_BASE if col.startswith(b)), None)
        if base is not None:
            text = descriptions[base]
            if "derivative1" in col:
                text = f"Temporal derivative of: {text}"
            if col.endswith("power2"):
                text = f"Square of: {text}"
        elif col == "framewise_displacement":
            text = "Framewise displacement (Power et al. 2012, radius 50 mm)"
        elif col.startswith("non_steady_state_outlier"):
            text = "Non-steady-state volume at the start of the run (one-hot)"
        else:
            text = "Discrete cosine basis regressor (128 s high-pass)"
        meta[col] = {"Description": text}
    write_json(func / f"{s}_desc-confounds_timeseries.json", meta)


# --------------------------------------------------------------------------------------------------
# TemplateFlow


def _template_description(identifier: str, name: str, res: dict[str, object] | None) -> dict[str, object]:
    desc: dict[str, object] = {
        "Authors": ["bids_recon developers (simulated stand-in)"],
        "BIDSVersion": "1.1.0",
        "HowToAcknowledge": "This is a SIMULATED stand-in written by bids_recon-sim, not the real template.",
        "Identifier": identifier,
        "License": "CC0",
        "Name": name,
        "ReferencesAndLinks": [],
        "TemplateFlowVersion": "1.0.0",
    }
    if res:
        desc["res"] = res
    return desc


def write_templateflow(tf_dir: Path, anat: Anatomy, preset: SimPreset) -> None:
    """Write the TemplateFlow folder (atlas, brain mask, T1w in the BOLD grid; HOCPA label table)."""
    write_json(
        tf_dir / "dataset_description.json",
        {"Name": "TemplateFlow (simulated stand-in by bids_recon-sim)", "BIDSVersion": "1.1.0"},
    )
    tpl = tf_dir / f"tpl-{SPACE}"
    res = {
        "02": {
            "origin": [float(v) for v in anat.affine[:3, 3]],
            "shape": [int(v) for v in anat.mask.shape],
            "zooms": [preset.voxel_size] * 3,
        }
    }
    write_json(
        tpl / "template_description.json",
        _template_description(SPACE, "ICBM 2009c Nonlinear Asymmetric (simulated stand-in)", res),
    )
    save_nifti(anat.atlas.astype(np.int16), anat.affine, tpl / f"tpl-{SPACE}_res-02_atlas-HOCPA_desc-th25_dseg.nii.gz")
    save_nifti(anat.mask.astype(np.uint8), anat.affine, tpl / f"tpl-{SPACE}_res-02_desc-brain_mask.nii.gz")
    save_nifti(anat.t1w, anat.affine, tpl / f"tpl-{SPACE}_res-02_T1w.nii.gz")
    six = tf_dir / "tpl-MNI152NLin6Asym"
    write_json(
        six / "template_description.json",
        _template_description("MNI152NLin6Asym", "FSL's MNI ICBM 152 non-linear 6th Generation (stand-in)", None),
    )
    (six / "tpl-MNI152NLin6Asym_atlas-HOCPA_dseg.tsv").write_text(label_table_text())


# --------------------------------------------------------------------------------------------------
# ground truth


def write_truth(truth_dir: Path, preset: SimPreset, seed: int, stim: StimulusSet, models: list[SubjectModel]) -> None:
    """Write the ground-truth folder: README.md, stimuli.tsv, simulation.json, per-subject npz + trials."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    write_tsv(truth_dir / "stimuli.tsv", stim.table)
    write_json(
        truth_dir / "simulation.json",
        {
            "generator": SIM_NAME,
            "version": __version__,
            "seed": seed,
            "preset": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(preset).items()},
            "categories": list(CATEGORIES),
            "colours": {k: list(v) for k, v in COLOURS.items()},
            "backgrounds": {k: list(v) for k, v in BACKGROUNDS.items()},
            "early_visual_labels": list(EARLY_VISUAL),
            "higher_visual_labels": list(HIGHER_VISUAL),
        },
    )
    (truth_dir / "README.md").write_text(TRUTH_README.format(preset=preset.name, seed=seed, hrf_dt=HRF_DT))
    for m in models:
        sub = truth_dir / f"sub-{m.subject}"
        sub.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(sub / f"sub-{m.subject}_truth.npz", **m.truth_arrays())
        write_tsv(sub / f"sub-{m.subject}_trials.tsv", m.trials, float_format="%.3f")


TRUTH_README = """# Ground truth of a simulated bids_recon dataset

Preset "{preset}", seed {seed}. Load it with `bids_recon.sim.load_truth(truth_dir, "01")`.
Units: responses and amplitudes in percent signal change; times in seconds; positions as fractions of the
image width/height measured from the top-left corner.

## Files

- `simulation.json`: generator, version, seed, every preset setting, the category/colour palettes and
  the atlas label names of the early- and higher-visual ROIs.
- `stimuli.tsv`: one row per stimulus (shared by all subjects), sorted by `stim_id`:
  `stim_file` (in the raw dataset's stimuli/), `stim_id` (1-based, the number in the file name),
  `category` (object category, the semantic variable), `colour` (object colour), `background`
  (background colour), `x`, `y` (object centre), `size` (object extent / image width), `split`
  (train: shown once; test: shown `n_repeats` times), `n_repeats`.
- `sub-XX/sub-XX_trials.tsv`: one row per trial in (session, run, trial_index) order: subject, session,
  run, trial_index (0-based within the run), onset, duration, stim_id, stim_file, split, repeat (0-based
  count of earlier presentations of the stimulus to this subject).
- `sub-XX/sub-XX_truth.npz`: arrays over the subject's brain-mask voxels in the order
  `np.flatnonzero(mask)` (C order); n_vox = mask.sum().

## Arrays in sub-XX_truth.npz

n_vox = mask.sum(); n_stimuli, n_trials as in stimuli.tsv and sub-XX_trials.tsv.

- `mask` (nx, ny, nz) bool: the subject's brain mask (= the fMRIPrep-like desc-brain_mask).
- `voxel_kind` (n_vox,) int8: 0 no stimulus-specific signal, 1 early-visual receptive-field voxel,
  2 higher-visual semantic voxel. `signal` (n_vox,) bool: voxel_kind > 0.
- `response` (n_stimuli, n_vox) float32: true response to each stimulus (row i is stim_id i + 1), zero mean
  over stimuli and sd `response_sd` (0.5-1.5 %) in signal voxels, 0 elsewhere.
- `amplitudes` (n_trials, n_vox) float32: true single-trial amplitudes, rows as in sub-XX_trials.tsv:
  `evoked + response[stim_id - 1] + jitter` (jitter sd = 0.25 x response_sd); 0 outside the visual labels.
- `evoked` (n_vox,) float32: mean evoked response (~1 % in every visual-label voxel, signal or not; 0
  elsewhere). `response_sd` (n_vox,) float32.
- `hrf` (n_vox, n_samples) float32: impulse response h(t) sampled every `hrf_dt` = {hrf_dt} s from t = 0.
  A trial of duration d and amplitude a adds `a * int_0^d h(t - onset - s) ds` to the BOLD (in %); this
  peaks at a for the 3-s images. `hrf_dt` () float32.
- `hrf_peak`, `hrf_undershoot` (n_vox,) float32: times of the maximum and minimum of h (time to peak drawn
  ~U(4, 7) s, spatially smooth). `hrf_ratio` (n_vox,) float32: undershoot ratio of the double gamma.
- `prf_x`, `prf_y`, `prf_sigma` (n_vox,) float32: Gaussian receptive-field centre and sd (fractions of the
  image width/height, from the top-left corner) of voxel_kind 1; NaN otherwise.
- `colour_weights` (n_vox, 3) float32: R, G, B weights of voxel_kind 1 (luminance + red-green +
  blue-yellow); NaN otherwise.
- `semantic_weights` (n_vox, n_categories) float32: category weights of voxel_kind 2 (categories in
  simulation.json order); 0 otherwise.
- `ncsnr_target` (n_vox,) float32: expected single-trial ncsnr of LSA betas (canonical Glover HRF, cosine
  drift, the 9 base confounds, betas z-scored per session); 0 for non-signal voxels.
- `noise_sd` (n_vox,) float32: marginal sd (% signal change) of the voxel's AR(1) noise;
  `ar1_rho` (n_vox,) float32: its AR(1) coefficient (per volume, 0.2-0.5).
- `baseline` (n_vox,) float32: mean intensity (~1000).
- `shared_loadings` (n_vox, 9) float32: loadings (% signal change) of the voxel on the standardised shared
  noise series, in the order global_signal, csf, white_matter, trans_x, trans_y, trans_z, rot_x, rot_y,
  rot_z.

## How the data were made

- Early-visual signal voxels (about 60% of the Intracalcarine, Supracalcarine, Cuneal, Lingual and
  Occipital Pole label voxels): response = linear function of the pixels, `sum_p gauss(p; prf) *
  colour_weights . rgb(p)`, standardised over stimuli and scaled to `response_sd`. Receptive-field
  centres are retinotopic (left/right hemisphere -> right/left field, dorsal -> lower field) and cover the
  image; sd grows with eccentricity (5-20% of the width).
- Higher-visual signal voxels (about 60% of the Lateral Occipital, (Temporal) Occipital Fusiform,
  Inferior Temporal temporooccipital and Parahippocampal posterior label voxels): response = category
  one-hot @ semantic_weights + a small object-size term, standardised and scaled likewise.
- BOLD (% signal change) = sum over trials of amplitude x (HRF * 3-s boxcar) + noise, where noise = AR(1)
  (`noise_sd`, `ar1_rho`) + shared series @ `shared_loadings` + slow cosine drift (at most 3 cosines,
  inside nilearn's 0.01 Hz cosine drift basis); intensity = baseline * (1 + BOLD / 100), stored as
  int16 (rounded), zero outside the brain mask. Frame times are `arange(n_vols) * TR` (no slice timing).
- The confounds TSV records the 9 shared series (global_signal, csf, white_matter, trans_*, rot_*; each
  an affine function of the standardised series plus 5% measurement noise), with fMRIPrep's
  `_derivative1`, `_power2`, `_derivative1_power2`, `framewise_displacement` and `cosineXX` columns.
  Regressing the 9 base columns removes nearly all the shared noise; without them the noise sd of every
  voxel is about 12% higher (shared sd = 0.5 x AR(1) sd).
- `noise_sd` of signal voxels was set from a per-voxel target ncsnr (lognormal, median 0.4) using the
  LSA estimator's variance (design, AR(1) inflation, HRF mismatch, trial-to-trial jitter).
"""
