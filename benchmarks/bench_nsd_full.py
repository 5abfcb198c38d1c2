"""NSD subj01 at full size in one run: wall time, memory and disk of every stage, on this machine.

    python benchmarks/bench_nsd_full.py --root /scratch/nsdfull [--sessions 37] [--kill-during decode]

Writes once (reused when present) the full-size NSD stand-in (``bids_recon-sim ROOT/NSD --layout nsd --preset
full``: 37 sessions x 750 int16 betas on the 81 x 104 x 83 grid, the shared1000 split, the image brick, COCO
captions), a random-weight SD-1.x-shaped model (``save_tiny_model(..., shapes="sd")``: z = 4 x 40 x 40, c = 77 x
768) and random-weight evaluation networks of the real architectures; then runs Takagi & Nishimoto's path,

    bids_recon ROOT/NSD ROOT/out participant --dataset nsd --participant-label 01 --generator diffusion \\
        --encoding on --model ROOT/models/sd-shapes --config-file ROOT/bench.toml --nprocs 2 -w ROOT/work
    bids_recon ROOT/NSD ROOT/out group

with ``bench.toml`` (written next to the results) setting what CPU time demands: fewer DDIM steps
(``--steps``, default 5 instead of 50) and the metrics listed by ``--metrics``. While it runs, the summed resident
memory (``VmRSS``) and anonymous memory (``RssAnon``) of the whole process tree are sampled every second, and the
work and output folders' sizes every 20 s. Stage times come from the start and end times nipype writes in each
node's ``result_<node>.pklz``. A stage's memory is given twice: its largest node's own peak (the processes whose
working directory is that node's folder, where nipype runs it) and the tree's peak while one of its nodes ran
(nodes of other stages that ran alongside included: ``--nprocs 2``).

``--kill-during decode`` sends SIGKILL to the run's process group as soon as a decoder node starts, runs the same
command again and reports which nodes the second run recomputed (the imports and features must not be).

Results: ``ROOT/results/nsd_full.json`` and a markdown table on stdout (the table in docs/benchmarks.md).
``--sessions N`` runs the first N sessions only (``--session-label 1-N``), for a quick check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_wholebrain import TreeMemory  # noqa: E402

#: node-name patterns -> stage (first match wins)
STAGES = [
    (r"^(import_|import_mask|import_split)", "import betas"),
    (r"^combine_runs$", "stack + z-score"),
    (r"^rois$", "ROIs"),
    (r"^stimulus_latents$", "z and c features"),
    (r"^decode_", "decoders"),
    (r"^reconstruct", "reconstruction"),
    (r"^evaluate", "metrics"),
    (r"^(stimulus_bottleneck|encoding_models|write_encoding)", "encoding maps"),
    (r"^report$", "report"),
    (r"^(ds_|write_)", "writing outputs"),
]


def stage_of(node: str) -> str:
    """The stage a node (its last dotted part) belongs to."""
    name = re.split(r"[./]", node)[-1]
    for pattern, stage in STAGES:
        if re.search(pattern, name):
            return stage
    return "other"


class TreeSampler(TreeMemory):
    """Every ``interval`` s: summed VmRSS and RssAnon of a process tree; every ``disk_every`` s: folder sizes."""

    def __init__(self, pid: int, folders: dict[str, Path], interval: float = 1.0, disk_every: float = 20.0) -> None:
        self.folders, self.disk_every = folders, disk_every
        self.samples: list[tuple[float, int, int]] = []  # (time, rss, anon)
        self.disk: dict[str, int] = {name: 0 for name in folders}
        #: node folder (relative to the work folder) -> peak (VmRSS, RssAnon) of the processes running in it
        self.node_peaks: dict[str, tuple[int, int]] = {}
        super().__init__(pid, interval)

    def _run(self) -> None:
        last_disk = 0.0
        work = os.path.realpath(self.folders["work"]) + os.sep if "work" in self.folders else None
        while not self._stop.is_set():
            rss = anon = 0
            per_node: dict[str, list[int]] = {}
            for pid in self._tree():
                try:
                    pid_rss = pid_anon = 0
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            pid_rss = int(line.split()[1]) * 1024
                        elif line.startswith("RssAnon:"):
                            pid_anon = int(line.split()[1]) * 1024
                    cwd = os.readlink(f"/proc/{pid}/cwd") if work else ""
                except OSError:
                    continue
                rss, anon = rss + pid_rss, anon + pid_anon
                if work and cwd.startswith(work):  # nipype runs a node inside its folder
                    totals = per_node.setdefault(cwd[len(work):], [0, 0])
                    totals[0] += pid_rss
                    totals[1] += pid_anon
            now = time.time()
            self.samples.append((now, rss, anon))
            self.peak = max(self.peak, rss)
            for node, (node_rss, node_anon) in per_node.items():
                old = self.node_peaks.get(node, (0, 0))
                self.node_peaks[node] = (max(old[0], node_rss), max(old[1], node_anon))
            if now - last_disk >= self.disk_every:
                last_disk = now
                for name, folder in self.folders.items():
                    self.disk[name] = max(self.disk[name], folder_bytes(folder))
            time.sleep(self.interval)

    def stop(self) -> int:
        super().stop()
        for name, folder in self.folders.items():
            self.disk[name] = max(self.disk[name], folder_bytes(folder))
        return self.peak

    def peak_between(self, start: float = 0.0, end: float = float("inf")) -> tuple[int, int]:
        """Largest (VmRSS, RssAnon) sums sampled between ``start`` and ``end`` (epoch s)."""
        inside = [(r, a) for t, r, a in self.samples if start - self.interval <= t <= end + self.interval]
        return (max(r for r, _ in inside), max(a for _, a in inside)) if inside else (0, 0)


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (blocks actually allocated, so sparse files count what they use)."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


def node_windows(work: Path, since: float = 0.0) -> dict[str, dict]:
    """Node folder -> {start, end} (epoch s) of the nodes that finished in ``work`` at or after ``since``.

    nipype writes ``result_<node>.pklz`` with the node's start and end times when a node finishes; a node that was
    cached (not recomputed) keeps its older file.
    """
    from nipype.utils.filemanip import loadpkl

    nodes: dict[str, dict] = {}
    if not work.exists():
        return nodes
    for path in work.rglob("result_*.pklz"):
        try:
            if path.stat().st_mtime < since - 1:
                continue
            runtime = loadpkl(path).runtime
        except Exception:  # a file being written
            continue
        runtime = runtime[0] if isinstance(runtime, list) else runtime
        start, end = getattr(runtime, "startTime", None), getattr(runtime, "endTime", None)
        if start and end:
            nodes[str(path.parent.relative_to(work))] = {"start": datetime.fromisoformat(start).timestamp(),
                                                         "end": datetime.fromisoformat(end).timestamp()}
    return nodes


def started(work: Path, stage: str, since: float) -> bool:
    """Whether a node folder of ``stage`` appeared in ``work`` after ``since``."""
    if not work.exists():
        return False
    for dirpath, dirnames, _ in os.walk(work):
        for name in dirnames:
            if stage_of(name) == stage and os.stat(os.path.join(dirpath, name)).st_mtime >= since:
                return True
    return False


def stage_table(nodes: dict[str, dict], sampler: TreeSampler) -> list[dict]:
    """One row per stage: wall time (first start to last finish), summed node time, peaks while it ran."""
    stages: dict[str, dict] = {}
    for node, w in nodes.items():
        row = stages.setdefault(stage_of(node), {"start": w["start"], "end": w["end"], "node_s": 0.0, "nodes": 0,
                                                 "windows": []})
        row["start"], row["end"] = min(row["start"], w["start"]), max(row["end"], w["end"])
        row["node_s"] += w["end"] - w["start"]
        row["nodes"] += 1
        row["windows"].append((w["start"], w["end"]))
    out = []
    for stage, row in sorted(stages.items(), key=lambda kv: kv[1]["start"]):
        peaks = [sampler.peak_between(a, b) for a, b in row["windows"]]
        own = [sampler.node_peaks.get(node, (0, 0)) for node in nodes if stage_of(node) == stage]
        out.append({"stage": stage, "nodes": row["nodes"], "wall_s": round(row["end"] - row["start"]),
                    "node_s": round(row["node_s"]), "peak_rss_gb": round(max(p[0] for p in peaks) / 2**30, 2),
                    "peak_anon_gb": round(max(p[1] for p in peaks) / 2**30, 2),
                    "node_peak_rss_gb": round(max(p[0] for p in own) / 2**30, 2),
                    "node_peak_anon_gb": round(max(p[1] for p in own) / 2**30, 2)})
    return out


def prepare(root: Path, seed: int = 0) -> dict[str, Path]:
    """The stand-in, the models and the evaluation networks under ``root`` (each written once)."""
    from bids_recon.sim.nsdfull import write_nsd_full

    nsd = root / "NSD"
    if not (nsd / "nsddata").exists():
        start = time.perf_counter()
        write_nsd_full(nsd, seed=seed)
        print(f"stand-in written in {time.perf_counter() - start:.0f} s: {nsd}", file=sys.stderr)
    model = root / "models" / "sd-shapes"
    if not (model / "model_index.json").exists():
        from bids_recon.generate.testing import save_tiny_model, words_of

        annotations = nsd / "nsddata_stimuli" / "stimuli" / "nsd" / "annotations"
        texts = [a["caption"] for f in sorted(annotations.glob("captions_*.json"))
                 for a in json.loads(f.read_text())["annotations"]]
        save_tiny_model(model, words_of(texts), shapes="sd")
    torch_home, hf_home = root / "torch_home", root / "hf_home"
    if not (torch_home / "hub" / "checkpoints").exists():
        from bids_recon.evaluate.random_weights import write_random_weights

        write_random_weights(torch_home, hf_home, clip="large")
    return {"nsd": nsd, "model": model, "torch_home": torch_home, "hf_home": hf_home}


def write_settings(path: Path, steps: int, metrics: list[str]) -> Path:
    path.write_text(
        "# bench_nsd_full.py: what CPU time demands (the paper: 50 steps, every metric)\n"
        f"[workflow.generate.diffusion]\nsteps = {steps}\n\n"
        f"[workflow.evaluate]\nmetrics = {json.dumps(metrics)}\ndataset = \"nsd\"\n")
    return path


def run(command: list[str], env: dict, folders: dict[str, Path], kill_during: str | None = None) -> dict:
    """Run ``command`` in its own process group, sampled; optionally SIGKILL it when a node matching
    ``kill_during`` starts."""
    since = time.time()
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(process.pid, folders)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    killed = False
    while process.poll() is None:
        time.sleep(1.0)
        if kill_during and started(folders["work"], kill_during, since):
            time.sleep(5.0)
            os.killpg(process.pid, signal.SIGKILL)
            killed = True
            process.wait()
            break
    wall = time.perf_counter() - start
    sampler.stop()
    reader.join(timeout=5)
    nodes = node_windows(folders["work"], since)
    rss, anon = sampler.peak_between()
    return {"command": " ".join(command), "exit": process.returncode, "killed": killed, "wall_s": round(wall),
            "peak_rss_gb": round(rss / 2**30, 2), "peak_anon_gb": round(anon / 2**30, 2),
            "disk_gb": {k: round(v / 2**30, 2) for k, v in sampler.disk.items()},
            "stages": stage_table(nodes, sampler), "nodes": nodes, "stderr_tail": "".join(stderr[-30:])}


def report_size(out: Path) -> dict:
    """Size of the participant report and of what it embeds or links."""
    pages = sorted(out.glob("sub-01*.html"))
    sizes = {p.name: p.stat().st_size for p in pages}
    figures = out / "sub-01" / "figures"
    return {"html_bytes": sizes, "figures_bytes": folder_bytes(figures) if figures.exists() else 0,
            "figures_files": sum(1 for _ in figures.rglob("*")) if figures.exists() else 0}


def markdown(result: dict) -> str:
    rows = ["| stage | nodes | wall (s) | node time (s) | its largest node: RSS / anonymous (GiB) | "
            "whole tree meanwhile: RSS / anonymous (GiB) |", "|---|---|---|---|---|---|"]
    for r in result["participant"]["stages"]:
        rows.append(f"| {r['stage']} | {r['nodes']} | {r['wall_s']} | {r['node_s']} | {r['node_peak_rss_gb']} / "
                    f"{r['node_peak_anon_gb']} | {r['peak_rss_gb']} / {r['peak_anon_gb']} |")
    p = result["participant"]
    rows.append(f"| **participant, whole** | | **{p['wall_s']}** | | | **{p['peak_rss_gb']} / {p['peak_anon_gb']}** |")
    g = result.get("group")
    if g:
        rows.append(f"| group | | {g['wall_s']} | | | {g['peak_rss_gb']} / {g['peak_anon_gb']} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="folder for the stand-in, models, runs, results")
    parser.add_argument("--sessions", type=int, default=37, help="sessions of the stand-in (37: NSD's)")
    parser.add_argument("--steps", type=int, default=5, help="DDIM steps (the paper: 50)")
    parser.add_argument("--metrics", nargs="+", default=["pixcorr", "ssim", "alexnet2", "alexnet5"],
                        help="metrics computed (what the CPU time allows)")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--kill-during", choices=[s for _, s in STAGES], default=None,
                        help="SIGKILL the run when this stage starts, then run it again (resume check)")
    parser.add_argument("--keep", action="store_true", help="keep the previous out/work folders (resume)")
    args = parser.parse_args()
    root = args.root.expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    paths = prepare(root)
    tag = "" if args.sessions == 37 else f"-{args.sessions}"
    out, work, results = root / f"out{tag}", root / f"work{tag}", root / "results"
    results.mkdir(exist_ok=True)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    settings = write_settings(results / f"bench{tag}.toml", args.steps, args.metrics)
    env = {**os.environ, "TORCH_HOME": str(paths["torch_home"]), "HF_HOME": str(paths["hf_home"]),
           "HF_HUB_OFFLINE": "1"}
    participant = [sys.executable, "-m", "bids_recon", str(paths["nsd"]), str(out), "participant", "--dataset", "nsd",
                   "--participant-label", "01", "--session-label", f"1-{args.sessions}", "--generator", "diffusion",
                   "--encoding", "on", "--model", str(paths["model"]), "--config-file", str(settings), "--nprocs",
                   str(args.nprocs), "-w", str(work)]
    folders = {"work": work, "out": out}
    input_bytes = folder_bytes(paths["nsd"])
    result: dict = {"sessions": args.sessions, "steps": args.steps, "metrics": args.metrics, "nprocs": args.nprocs,
                    "cpus": os.cpu_count(), "input_gb": round(input_bytes / 2**30, 2),
                    "threads": {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}

    first = run(participant, env, folders, kill_during=args.kill_during)
    if args.kill_during:
        result["killed_run"] = {k: v for k, v in first.items() if k != "nodes"}
        second = run(participant, env, folders)
        result["resume"] = {"recomputed_stages": sorted({stage_of(n) for n in second["nodes"]}),
                            "recomputed_nodes": sorted(n.rsplit("/", 1)[-1] for n in second["nodes"])}
        first = second
    result["participant"] = {k: v for k, v in first.items() if k != "nodes"}
    if first["exit"] == 0:
        group = [sys.executable, "-m", "bids_recon", str(paths["nsd"]), str(out), "group", "-w", str(work)]
        result["group"] = {k: v for k, v in run(group, env, folders).items()
                           if k not in ("nodes", "stages")}
        result["report"] = report_size(out)
    result["work_over_input"] = round(result["participant"]["disk_gb"]["work"] / max(result["input_gb"], 1e-9), 2)
    (results / f"nsd_full{tag}.json").write_text(json.dumps(result, indent=1))
    print(markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k not in ("participant", "group")}, indent=1))
    return 0 if first["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
