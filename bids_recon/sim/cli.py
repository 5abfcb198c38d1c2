"""``bids_recon-sim``: write a simulated dataset with known ground truth."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bids_recon import __version__
from bids_recon.errors import BidsReconError, ExitCode, UsageError
from bids_recon.sim.layouts import LAYOUTS
from bids_recon.sim.multiexperiments import EXPERIMENTS
from bids_recon.sim.presets import PRESETS
from bids_recon.sim.shapes import SHAPES, parse_shapes
from bids_recon.sim.simulate import output_paths, resolve_simulation, simulate_dataset, stores_path

#: ``--preset full``: NSD subject 01's published betas at full size (:mod:`bids_recon.sim.nsdfull`).
FULL_PRESET = "full"
#: ``--preset multisubject[-tiny]``: several subjects' betas with a shared stimulus space, as NSD's download root
#: (:mod:`bids_recon.sim.multisubject`; the value is the :data:`~bids_recon.sim.multisubject.MULTI_PRESETS` name).
MULTI_PRESETS_CLI = {"multisubject": "small", "multisubject-tiny": "tiny"}


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``bids_recon-sim``."""
    presets = "; ".join(
        f"{name}: {p.n_subjects} subjects x {p.n_sessions * p.n_runs} runs, {p.n_train} training + "
        f"{p.n_test} test images x {p.n_test_repeats}, {p.image_size} px, grid {'x'.join(map(str, p.grid))}"
        for name, p in PRESETS.items()
    ) + ("; full: NSD subject 01's published betas at full size (--layout nsd only; published-betas path only: no "
         "raw BOLD, no fMRIPrep derivatives, no TemplateFlow folder): 37 sessions x 750 trials of int16 betas on the "
         "81x104x83 func1pt8mm grid, brain mask, streams/nsdgeneral ROIs, responses.tsv, nsd_expdesign.mat, "
         "nsd_stim_info_merged.csv, nsd_stimuli.hdf5 (73000 x 425 x 425 x 3, subject 01's 10000 rows written), "
         "COCO captions; ground truth in OUT_groundtruth/sub-01_nsdfull.npz"
         "; multisubject, multisubject-tiny: several subjects' single-trial betas with a shared stimulus space "
         "(--layout nsd only, published-betas path only; bids_recon.sim.multisubject): NSD's download root with "
         "every subject's betas, brain mask, streams ROIs, responses.tsv, one nsd_expdesign.mat, stim info "
         "(shared1000 = the test images), imgBrick and captions; ground truth in OUT_groundtruth/")
    parser = argparse.ArgumentParser(
        prog="bids_recon-sim",
        description=(
            "Write a synthetic NSD-like fMRI dataset with known ground truth: a raw BIDS dataset in OUT "
            "(events naming images in OUT/stimuli, with captions), fMRIPrep-like derivatives in "
            "OUT/derivatives/fmriprep, the ground truth in OUT_groundtruth and a TemplateFlow folder with "
            "the matching Harvard-Oxford atlas in OUT_templateflow."
        ),
        epilog=f"Presets: {presets}. Layouts: " + "; ".join(f"{n}: {lay.summary}" for n, lay in LAYOUTS.items())
               + ". Shapes: " + "; ".join(f"{n}: {shape.summary}" for n, shape in SHAPES.items()) + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out", metavar="OUT", type=Path, help="folder of the raw BIDS dataset to write")
    parser.add_argument("--preset", choices=[*sorted(PRESETS), FULL_PRESET, *MULTI_PRESETS_CLI], default="tiny",
                        help=f"size of the dataset ('{FULL_PRESET}': --layout nsd only, the published-betas path "
                             "only)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    parser.add_argument("--layout", choices=list(LAYOUTS), default="bids",
                        help="write the dataset as a public dataset lays it out (events columns, stimulus stores in "
                             "their formats, fMRIPrep naming); 'nsd' writes OUT as NSD's download root")
    parser.add_argument("--subjects", type=int, default=None, metavar="N", help="number of subjects (the preset's "
                        "by default)")
    parser.add_argument("--shape", action="append", default=None, metavar="NAME[,NAME...]",
                        help="write the data in shapes real BIDS datasets come in (composable; see the list below), "
                             f"e.g. --shape nosessions,jitter; one of: {', '.join(SHAPES)}")
    parser.add_argument("--experiments", nargs="+", default=None, metavar="NAME", choices=EXPERIMENTS,
                        help="with --layout nsd --preset multisubject[-tiny]: also write NSD's further experiments "
                             f"({', '.join(EXPERIMENTS)}) for every subject, betas from the same subjects' model "
                             "(bids_recon.sim.multiexperiments; their truth in OUT_groundtruth/<experiment>/)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete OUT, OUT_groundtruth, OUT_templateflow and OUT_stimuli first if they exist",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bids_recon-sim``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0 on success, 64 for a usage error (e.g. OUT not empty without ``--overwrite``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if args.subjects is not None and args.subjects < 1:
        parser.error("--subjects must be >= 1")
    shapes = parse_shapes(args.shape)
    extra = {"n_subjects": args.subjects} if args.subjects is not None else {}
    try:  # before anything is deleted
        if args.experiments and args.preset not in MULTI_PRESETS_CLI:
            raise UsageError(f"--experiments needs --layout nsd --preset multisubject or multisubject-tiny, not "
                             f"--preset {args.preset} --layout {args.layout}")
        if args.preset == FULL_PRESET:
            _check_full(args)
        elif args.preset in MULTI_PRESETS_CLI:
            _check_multi(args)
        else:
            resolve_simulation(args.preset, args.layout, shapes or None, **extra)
    except BidsReconError as exc:
        print(f"bids_recon-sim: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    bids_dir, truth_dir, tf_dir = output_paths(args.out)
    targets = [d for d in (bids_dir, truth_dir, tf_dir, stores_path(args.out))
               if d.exists() and (not d.is_dir() or any(d.iterdir()))]
    if targets and not args.overwrite:
        names = ", ".join(str(d) for d in targets)
        print(f"bids_recon-sim: error: not empty: {names} (use --overwrite to replace)", file=sys.stderr)
        return int(ExitCode.USAGE)
    for d in targets:
        if d.is_dir():
            shutil.rmtree(d)
        else:
            d.unlink()
    start = time.perf_counter()
    if args.preset == FULL_PRESET:
        return _write_full(args, start)
    if args.preset in MULTI_PRESETS_CLI:
        return _write_multi(args, start)
    try:
        ds = simulate_dataset(bids_dir, preset=args.preset, seed=args.seed, layout=args.layout, shapes=shapes or None,
                              **extra)
    except BidsReconError as exc:
        print(f"bids_recon-sim: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    took = time.perf_counter() - start
    invalid = [n for n in ds.shapes if not SHAPES[n].valid_bids]
    print(
        f"Simulated dataset (preset {args.preset}, layout {args.layout}, seed {args.seed}, {len(ds.subjects)} "
        f"subjects{', shapes ' + ','.join(ds.shapes) if ds.shapes else ''}) in {took:.1f} s:\n"
        f"  raw BIDS dataset:      {ds.bids_dir}\n"
        f"  fMRIPrep derivatives:  {ds.fmriprep_dir}\n"
        + (f"  outside the dataset:   {ds.stores_dir}\n" if ds.stores_dir else "")
        + f"  ground truth:          {ds.truth_dir}\n"
        f"  TemplateFlow home:     {ds.templateflow_dir}\n"
        "\nTo run the pipeline on it:\n"
        f"export TEMPLATEFLOW_HOME={ds.templateflow_dir}\n"
        f"bids_recon {ds.bids_dir} {bids_dir}_output participant -d fmriprep={ds.fmriprep_dir}"
        + "".join(f" {a}" for a in ds.run_args or [])
        + "".join(f"\n(shape {n}: {SHAPES[n].summary})" for n in invalid)
    )
    return int(ExitCode.SUCCESS)


def _check_full(args: argparse.Namespace) -> None:
    """``--preset full`` goes with ``--layout nsd`` and neither ``--shape`` nor ``--subjects``."""
    if args.layout != "nsd":
        raise UsageError(f"--preset full writes NSD's published betas only: it needs --layout nsd, not "
                         f"--layout {args.layout}")
    if args.shape:
        raise UsageError("--preset full cannot be combined with --shape (it writes NSD's own files only)")
    if args.subjects is not None:
        raise UsageError("--preset full writes NSD subject 01 only: --subjects cannot be given")


def _write_full(args: argparse.Namespace, start: float) -> int:
    from bids_recon.sim.nsdfull import write_nsd_full

    try:
        ds = write_nsd_full(args.out, seed=args.seed)
    except BidsReconError as exc:
        print(f"bids_recon-sim: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    took = time.perf_counter() - start
    print(
        f"Full-size NSD stand-in (subject 01, seed {args.seed}, {ds.n_sessions} sessions x {ds.trials_per_session} "
        f"trials, grid {'x'.join(map(str, ds.grid))}, {ds.counts['brain']} brain voxels, "
        f"{ds.counts['nsdgeneral']} in nsdgeneral) in {took:.1f} s, {ds.sizes['total'] / 1e9:.1f} GB:\n"
        f"  NSD download root:     {ds.root}\n"
        f"  ground truth:          {ds.truth_file}\n"
        "\nTo run the pipeline on it (published betas; no raw BOLD, no fMRIPrep derivatives):\n"
        f"bids_recon {ds.root} {ds.root}_output participant --dataset nsd --participant-label 01"
    )
    return int(ExitCode.SUCCESS)


def _check_multi(args: argparse.Namespace) -> None:
    """``--preset multisubject[-tiny]`` goes with ``--layout nsd`` and no ``--shape``; sizes are checked."""
    from bids_recon.sim.multisubject import MULTI_PRESETS

    if args.layout != "nsd":
        raise UsageError(f"--preset {args.preset} writes NSD's published betas only: it needs --layout nsd, not "
                         f"--layout {args.layout}")
    if args.shape:
        raise UsageError(f"--preset {args.preset} cannot be combined with --shape (it writes NSD's own files only)")
    extra = {"n_subjects": args.subjects} if args.subjects is not None else {}
    MULTI_PRESETS[MULTI_PRESETS_CLI[args.preset]].with_overrides(**extra)


def _write_multi(args: argparse.Namespace, start: float) -> int:
    from bids_recon.sim.multisubject import simulate_multisubject, write_groundtruth, write_nsd_multisubject

    extra = {"n_subjects": args.subjects} if args.subjects is not None else {}
    try:
        data = simulate_multisubject(MULTI_PRESETS_CLI[args.preset], seed=args.seed, **extra)
        root, truth, _ = output_paths(args.out)
        write_nsd_multisubject(root, data)
        write_groundtruth(truth, data)
        if args.experiments:
            from bids_recon.sim.multiexperiments import write_experiments

            written = write_experiments(root, truth, data, args.experiments)
    except BidsReconError as exc:
        print(f"bids_recon-sim: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    p = data.preset
    print(
        f"Multi-subject NSD stand-in (preset {args.preset}, seed {args.seed}, {p.n_subjects} subjects x "
        f"{p.n_sessions} sessions, {p.n_shared} shared images ({p.n_test} test) + {p.n_unique} own per subject, "
        f"x {p.n_repeats}) in {time.perf_counter() - start:.1f} s:\n"
        f"  NSD download root:     {root}\n"
        f"  ground truth:          {truth}\n"
        + "".join(f"  + {name}: {', '.join(f'{v} {k}' for k, v in summary.items())} (every subject)\n"
                  for name, summary in (written if args.experiments else {}).items())
        + "\nTo run the pipeline on it (published betas; no raw BOLD, no fMRIPrep derivatives):\n"
        f"bids_recon {root} {root}_output participant --dataset nsd --participant-label 01"
        + "".join(f"\nbids_recon {root} {root}_{name} participant --dataset {name} --participant-label 01 "
                  f"--decoders-from {root}_output" for name in dict.fromkeys(args.experiments or []))
    )
    return int(ExitCode.SUCCESS)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
