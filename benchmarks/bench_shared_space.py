"""Decoders shared across subjects on the multi-subject simulator: a new subject with 1, 2, 4 or all sessions.

For each seed, :func:`bids_recon.sim.multisubject.simulate_multisubject` draws several subjects (own voxel counts,
a common stimulus space mixed with subject-specific weights plus a subject-specific part, NSD-like shared and own
image sets, session offsets). Each subject in turn is the *new* subject; the others define the shared space
(:mod:`bids_recon.decoding.shared`). Decoded target: the images' 64-component PCA (the linear generator's
``imagepca``; basis fitted on every subject's training images), from the early-visual voxels (or ``--roi``).
Score: 2-way identification of the new subject's test images (repeat-averaged over all its sessions), chance 0.5.

Rows: own decoders trained on the first N sessions; shared-space decoders (each method) with the new subject's
first N sessions (map and training trials); N in ``--sessions`` (``all`` = every session).
Goals (issue 25): shared, 1 session >= 0.9 x own, all sessions; and shared, 1 session > own, 1 session by a clear
margin (>= 0.05 here).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_shared_space.py --out shared.json

BLAS threads are set to 1 before numpy loads unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if __name__ == "__main__":  # before numpy loads
    _threads = "1"
    if "--threads" in sys.argv:
        _threads = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bids_recon.decoding.params import DecodingParams, SharedSpaceParams  # noqa: E402
from bids_recon.decoding.shared import SubjectData, shared_space_decode, subject_decode  # noqa: E402
from bids_recon.evaluate.metrics import correlation_matrix, two_way_identification  # noqa: E402
from bids_recon.features import fit_image_basis  # noqa: E402
from bids_recon.glm import zscore_by_group  # noqa: E402
from bids_recon.sim.multisubject import simulate_multisubject  # noqa: E402


def subject_data(sim_subject, roi: str) -> SubjectData:
    keep = np.asarray(sim_subject.roi).astype(str) == roi
    trials = sim_subject.trials
    betas = zscore_by_group(sim_subject.betas[:, keep], trials["session"].to_numpy())
    return SubjectData(sim_subject.subject, betas.astype(np.float32), trials)


def pca_targets(data, subjects: list[SubjectData], n_components: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    stim_ids = data.stim_table["stim_id"].astype(str).to_numpy()
    train = sorted(set().union(*(set(d.stim_ids[d.rows("train")]) for d in subjects)))
    position = {s: i for i, s in enumerate(stim_ids)}
    basis = fit_image_basis(data.images[[position[s] for s in train]], n_components, seed)
    return stim_ids, basis.encode(data.images)


def score(decoded) -> float:
    """2-way identification (chance 0.5)."""
    return float(two_way_identification(decoded.decoded, decoded.true).mean())


def top1(decoded) -> float:
    """n-way (top-1) identification among all test stimuli: the decoded features correlate best with their own
    stimulus' (chance 1/n)."""
    corr = correlation_matrix(decoded.decoded, decoded.true)
    return float(np.mean(np.argmax(corr, axis=1) == np.arange(len(corr))))


def run(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    decoding = DecodingParams()
    for seed in args.seeds:
        start = time.perf_counter()
        overrides: dict = {"n_sessions": args.n_sessions} if args.n_sessions else {}
        if any(args.voxels):
            overrides["voxels"] = tuple(args.voxels)
        if any(args.grid):
            overrides["grid"] = tuple(args.grid)
        data = simulate_multisubject(args.preset, seed=seed, **overrides)
        subjects = [subject_data(s, args.roi) for s in data.subjects]
        stim_ids, features = pca_targets(data, subjects, args.components_pca, seed)
        news = subjects if args.new_subjects == 0 else subjects[:args.new_subjects]
        for new in news:
            references = [d for d in subjects if d is not new]
            n_sessions = new.trials["session"].nunique()
            for wanted in args.sessions:
                n = n_sessions if wanted == "all" else int(wanted)
                base = {"seed": seed, "subject": new.subject, "sessions": wanted, "voxels": new.betas.shape[1]}
                t0 = time.perf_counter()
                own = subject_decode(new, stim_ids, features, decoding, n)
                rows.append({**base, "method": "own", "identification": score(own), "top1": top1(own),
                             "seconds": time.perf_counter() - t0})
                for method in args.methods:
                    t0 = time.perf_counter()
                    params = SharedSpaceParams(method=method, n_components=args.components,
                                               combine_own=args.combine_own)
                    decoded, _, _ = shared_space_decode(references, new, stim_ids, features, params, decoding, n)
                    rows.append({**base, "method": f"shared-{method}", "identification": score(decoded),
                                 "top1": top1(decoded), "seconds": time.perf_counter() - t0})
        print(f"seed {seed}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame, sessions: list[str]) -> tuple[pd.DataFrame, dict]:
    mean = (table.groupby(["method", "sessions"], sort=False)
            .agg(identification=("identification", "mean"), sd=("identification", "std"), top1=("top1", "mean"),
                 n=("identification", "count")).reset_index())
    own_all = table[(table.method == "own") & (table.sessions == "all")].set_index(["seed", "subject"])
    goals = {}
    for method in sorted(set(table.method) - {"own"}):
        one = table[(table.method == method) & (table.sessions == "1")].set_index(["seed", "subject"])
        own_one = table[(table.method == "own") & (table.sessions == "1")].set_index(["seed", "subject"])
        if one.empty or own_all.empty:
            continue
        ratio = one["identification"] / own_all["identification"]
        margin = one["identification"] - own_one["identification"]
        top1_margin = one["top1"] - own_one["top1"]
        goals[method] = {"ratio_to_own_all_mean": float(ratio.mean()), "ratio_to_own_all_min": float(ratio.min()),
                         "top1_ratio_to_own_all_mean": float((one["top1"] / own_all["top1"]).mean()),
                         "top1_margin_over_own_one_mean": float(top1_margin.mean()),
                         "margin_over_own_one_mean": float(margin.mean()),
                         "margin_over_own_one_min": float(margin.min()),
                         "ratio_goal_met": bool(ratio.mean() >= 0.9), "margin_goal_met": bool(margin.mean() >= 0.05)}
    return mean, goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="multi-subject preset (bids_recon.sim.multisubject)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-sessions", type=int, default=12, help="sessions per subject (the preset's when 0)")
    parser.add_argument("--voxels", type=int, nargs=2, default=[1500, 2500], metavar=("MIN", "MAX"),
                        help="voxels per ROI and subject (the preset's when 0 0)")
    parser.add_argument("--grid", type=int, nargs=3, default=[36, 42, 36], metavar=("X", "Y", "Z"),
                        help="volume grid the brains are placed on (room for the voxels; the preset's when 0 0 0)")
    parser.add_argument("--methods", nargs="+", default=["ridge", "srm"])
    parser.add_argument("--sessions", nargs="+", default=["1", "2", "4", "all"])
    parser.add_argument("--components", type=int, default=SharedSpaceParams.n_components,
                        help="shared-space dimensions (workflow.shared.n_components)")
    parser.add_argument("--components-pca", type=int, default=64, help="image PCA components (the target)")
    parser.add_argument("--roi", default="earlyvisual")
    parser.add_argument("--combine-own", action="store_true",
                        help="average the shared-space prediction with the subject's own decoder")
    parser.add_argument("--new-subjects", type=int, default=0, help="how many subjects take the new one's turn "
                                                                     "(0: all)")
    parser.add_argument("--threads", default="1", help="BLAS threads (set before numpy loads)")
    parser.add_argument("--out", default="", help="JSON with every row, the means and the goals")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table = run(args)
    mean, goals = summarise(table, args.sessions)
    with pd.option_context("display.width", 160):
        print(mean.to_string(index=False))
    print(json.dumps(goals, indent=1))
    print(f"total {time.perf_counter() - start:.1f} s, BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"args": vars(args), "rows": table.to_dict("records"), "means": mean.to_dict("records"),
                       "goals": goals, "seconds": time.perf_counter() - start}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
