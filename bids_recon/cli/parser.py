"""The BIDS-App command line, built in one function with argument groups (as fMRIPrep does)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bids_recon import __version__
from bids_recon.config import Config
from bids_recon.errors import ExitCode
from bids_recon.glm.estimators import ESTIMATORS

ANALYSIS_LEVELS = ("participant", "group")


class _Parser(argparse.ArgumentParser):
    """argparse with the BIDS-App exit code for usage errors (64 instead of 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage()
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    return name, value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file not found: {text}")
    return path


def build_parser() -> argparse.ArgumentParser:
    """Return the ``bids_recon`` argument parser."""
    defaults = Config()
    parser = _Parser(
        prog="bids_recon",
        description=(
            "Reconstruct the images a participant saw from fMRI (after Takagi & Nishimoto, CVPR 2023): "
            "single-trial betas -> visual ROIs -> stimulus features -> ridge decoders -> reconstruction -> "
            "metrics -> HTML report, written as a BIDS-derivatives dataset."
        ),
        epilog=(
            "Exit codes: 0 success, 1 failure, 16 input not valid BIDS, 17 unknown analysis level, "
            "18 filters selected nothing, 64 usage error, 65 bad data, 66 missing input. "
            "Example: bids_recon DS OUT participant -d fmriprep=DS/derivatives/fmriprep"
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("bids_dir", type=Path, help="the raw BIDS dataset (with events.tsv and stimuli/)")
    parser.add_argument("output_dir", type=Path,
                        help="where the derivatives dataset is written; must not be inside bids_dir")
    parser.add_argument("analysis_level", help="'participant' (one report per participant) or 'group' "
                        "(group table and report across the participants present in output_dir)")
    parser.add_argument("--version", action="version", version=f"bids_recon {__version__}")

    sel = parser.add_argument_group("Selecting data")
    sel.add_argument("--participant-label", "--participant_label", nargs="+", default=[], metavar="LABEL",
                     help="participants to process (with or without 'sub-'); all by default")
    sel.add_argument("--session-label", nargs="+", default=[], metavar="LABEL",
                     help="sessions to use (with or without 'ses-'); all by default")
    sel.add_argument("-t", "--task-id", default=None, metavar="TASK",
                     help="task to use; needed only when the dataset has several")
    sel.add_argument("--bids-filter-file", type=_existing_file, default=None, metavar="FILE",
                     help='JSON with extra entity filters for the BOLD query, as fMRIPrep: {"bold": {"run": [1, 2]}}')
    sel.add_argument("-d", "--derivatives", nargs="+", type=_key_value, default=[], metavar="NAME=PATH",
                     help="derivative datasets; 'fmriprep=PATH' is required unless "
                          "bids_dir/derivatives/fmriprep exists")
    sel.add_argument("--space", default=defaults.workflow.space,
                     help="fMRIPrep output space of the preprocessed BOLD to use")
    sel.add_argument("--res", dest="resolution", default=defaults.workflow.resolution,
                     help="'res-' label of the preprocessed BOLD ('none' when the files have no res- entity)")

    method = parser.add_argument_group("Method")
    method.add_argument("--glm", dest="glm_estimator", choices=list(ESTIMATORS),
                        default=defaults.workflow.glm.estimator,
                        help="single-trial estimator: lsa (canonical HRF, least squares), lss (least-squares "
                             "separate), fithrf (HRF per voxel from a library), fithrf-denoise (+ noise regressors "
                             "chosen by cross-validation), fithrf-denoise-rr (+ fractional ridge; GLMsingle-class)")
    method.add_argument("--roi-mask", action="append", type=_key_value, default=[], metavar="NAME=PATH[:LABEL]",
                        help="use a mask file for ROI NAME instead of the atlas (voxels > 0, or == LABEL); "
                             "repeatable, e.g. --roi-mask earlyvisual=streams.nii.gz:1")
    method.add_argument("--decoder-roi", default=defaults.workflow.decoding.roi,
                        help="ROI whose betas feed the decoder")
    method.add_argument("--n-components", type=int, default=defaults.workflow.decoding.n_components,
                        help="components of the pixel PCA basis decoded by the linear generator")
    method.add_argument("--image-size", type=int, default=defaults.workflow.stimuli.image_size,
                        help="stimuli are loaded at this size (pixels) for features and reconstructions")
    method.add_argument("--stimulus-column", default=defaults.workflow.stimuli.column,
                        help="events.tsv column naming each trial's image (relative to stimuli/)")
    method.add_argument("--test-min-repeats", type=int, default=defaults.workflow.stimuli.test_min_repeats,
                        help="stimuli shown at least this many times form the test set (unless --test-split)")
    method.add_argument("--test-split", default=defaults.workflow.stimuli.test_split, metavar="COLUMN=VALUE[,VALUE]",
                        help="name the test set in the events instead: trials whose COLUMN has one of the values "
                             "are test trials, the others training trials (e.g. trial_type=test for THINGS-fMRI, "
                             "shared1000=True for NSD); a stimulus must be in one set only")
    method.add_argument("--generator", choices=["linear", "diffusion"], default=defaults.workflow.generate.generator,
                        help="image generator: 'linear' = PCA image basis (CPU, no weights); 'diffusion' = "
                             "Takagi & Nishimoto (2023): VAE latent z and caption embedding c decoded, then "
                             "latent-diffusion img2img (needs the model's weights; a GPU is advised)")

    diff = defaults.workflow.generate.diffusion
    dif = parser.add_argument_group("Latent diffusion (--generator diffusion)")
    dif.add_argument("--model", default=diff.model,
                     help="local diffusers folder, or a Hugging Face hub id looked up in --model-dir and the "
                          "HF cache (HF_HOME); never downloaded without --allow-download")
    dif.add_argument("--model-dir", default=diff.model_dir, metavar="DIR",
                     help="folder holding models under their hub id (DIR/CompVis/stable-diffusion-v1-4); "
                          "default $BIDS_RECON_MODEL_DIR")
    dif.add_argument("--allow-download", action="store_true", help="allow downloading the model from the hub")
    dif.add_argument("--captions", default=None, metavar="FILE",
                     help="captions table (TSV: stim_file, caption; several rows per image allowed); "
                          f"default BIDS_DIR/{defaults.workflow.stimuli.captions}")
    dif.add_argument("--feature-cache", default=diff.feature_cache, metavar="DIR",
                     help="cache of stimulus z/c features shared across subjects and runs "
                          "(default WORK_DIR/feature_cache)")
    dif.add_argument("--latent-image-size", type=int, default=diff.latent_image_size,
                     help="stimuli are resized to this size (px) before VAE encoding (paper: 320 -> 4x40x40)")
    dif.add_argument("--diffusion-steps", type=int, default=diff.steps, help="DDIM steps")
    dif.add_argument("--strength", type=float, default=diff.strength, help="img2img noise strength (0-1)")
    dif.add_argument("--guidance-scale", type=float, default=diff.guidance_scale,
                     help="classifier-free guidance against the empty-caption embedding")
    dif.add_argument("--n-samples", type=int, default=diff.n_samples, help="samples per image (c and z+c)")
    dif.add_argument("--diffusion-seed", type=int, default=diff.seed, help="sample k uses seed + k")
    dif.add_argument("--diffusion-batch-size", type=int, default=diff.batch_size,
                     help="images per batch (feature extraction and generation)")
    dif.add_argument("--output-size", type=int, default=diff.output_size,
                     help="size (px) of generated images; 0 = the model's own (512 for SD-1.x)")
    dif.add_argument("--variants", nargs="+", choices=["z", "c", "zc"], default=list(diff.variants),
                     help="reconstructions to make: z only, c only, z+c (img2img)")
    dif.add_argument("--no-progress", action="store_true", help="no progress bars")

    perf = parser.add_argument_group("Performance")
    perf.add_argument("--nprocs", "--nthreads", type=int, default=None, metavar="N",
                      help="processes nipype runs at once (default: all CPUs)")
    perf.add_argument("--omp-nthreads", type=int, default=None, metavar="N",
                      help="threads per process for BLAS/OpenMP (default: 1)")
    perf.add_argument("--mem", "--mem-gb", dest="mem_gb", type=float, default=None, metavar="GB",
                      help="memory nipype may schedule, in GB (default: no limit)")
    perf.add_argument("--use-plugin", type=_existing_file, default=None, metavar="FILE.yml",
                      help="nipype plugin configuration (YAML with 'plugin' and 'plugin_args')")
    perf.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                      help="where ridge and generation run; auto = CUDA when available")

    other = parser.add_argument_group("Other options")
    other.add_argument("-w", "--work-dir", type=Path, default=None,
                       help="nipype work directory; rerunning with the same one resumes (default: OUTPUT_DIR/../work)")
    other.add_argument("--random-seed", type=int, default=0, help="seed of every random step")
    other.add_argument("--config-file", type=_existing_file, default=None, metavar="FILE.toml",
                       help="settings in the TOML format that every run saves in OUTPUT_DIR/logs; flags win")
    other.add_argument("--skip-bids-validation", action="store_true",
                       help="do not run the BIDS validator on bids_dir")
    other.add_argument("--stop-on-first-crash", action="store_true", help="stop at the first failing node")
    other.add_argument("--reports-only", action="store_true",
                       help="only rebuild the HTML reports from the outputs already in output_dir")
    other.add_argument("--check-only", action="store_true",
                       help="check the inputs (files, grids, stimuli, split, ROIs, captions, model) and the "
                            "workflow, write the log and methods text, then stop without computing: run it "
                            "before queueing a long job")
    other.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    return parser
