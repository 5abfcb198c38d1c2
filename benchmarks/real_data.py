"""Real public BOLD for the GLM benchmark (``benchmarks/bench_glm_real.py``): where to get it, how to build its inputs.

Nothing is downloaded here and no data lives in this repository. Each dataset below names the public Git repository
that ships it as plain files (not Git LFS or git-annex pointers), the commit it was read at and the files used. Get
the repository (``git clone``, or any copy of it), then build the benchmark's inputs from it::

    python benchmarks/real_data.py --list
    git clone https://github.com/PyMVPA/PyMVPA /tmp/PyMVPA
    git clone https://github.com/pyhrf/pyhrf /tmp/pyhrf
    python benchmarks/real_data.py --source /tmp/PyMVPA --out /tmp/bids_recon_real     # haxby-slice
    python benchmarks/real_data.py --source /tmp/pyhrf --out /tmp/bids_recon_real       # the localizer sets

``--source`` is a working tree, an extracted copy, or a bare git directory (the files are then read with
``git show <commit>:<path>``). Each dataset is written to ``<out>/<name>.npz`` (raw BOLD of the voxels, per run, and
the trials); :func:`load` reads it back.

Datasets
--------
``haxby-slice`` (block design)
    Haxby et al. (2001), subject 1, as PyMVPA ships it for its tests: the posterior half of one axial slice
    (40 x 20 voxels of 3.1 x 3.75 x 3.75 mm, 530 in PyMVPA's brain mask), 12 runs x 121 volumes, TR 2.5 s; in each
    run one 22.5-s block of each of 8 categories (faces, houses, cats, bottles, scissors, shoes, chairs, scrambled
    pictures), onsets and durations from the runs' ``bold_events.tsv``. 96 blocks, 12 per category. Decoding target:
    the category (chance 1/8).
``localizer-4regions`` and ``localizer-subj0`` (fast event-related)
    The 10-condition functional localizer (Pinel et al. 2007: auditory or visual sentences, mental calculation,
    left or right button presses, horizontal or vertical checkerboards) as pyhrf ships it: one run of real BOLD
    each, TR 2.4 s, 80 trials (5 or 10 per condition) at intervals of about 3 s, the protocol in
    ``paradigm_loc.csv`` (the same for every subject). ``localizer-4regions``: 128 volumes, 6443 voxels of
    2 x 2 x 3 mm in the 6 parcels of ``real_data_vol_4_regions_mask``; ``localizer-subj0``: another subject,
    125 volumes, 1272 voxels of 3 mm in the 2 parcels of ``subj0_parcellation``. Both tools need runs to
    cross-validate and the decoding leaves a run out, so the run is cut into ``LOCALIZER_PARTS`` consecutive parts of
    whole volumes, each a run of its own (a trial belongs to the part its onset falls in; the few trials whose
    response runs past their part's end lose that tail; a trial whose onset rounds to a part's last edge is left
    out). Every trial is modelled as a 1-s event (``EVENT_DURATION``). Decoding targets: how the stimulus came
    (spoken or seen; chance 0.625, the share of seen trials) and the condition (chance 1/10).

Onsets are used as the sources give them. Checked by fitting a canonical-HRF model with all onsets shifted: the
localizer's fit is best with no shift; Haxby's is best with every onset 5 s earlier (its events run late against
the BOLD, or its responses come early; issue 22 saw the same in its held-out block design). That offset is real
and hits every estimator alike; it is left in, as a user's events would leave it.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Parts each single-run localizer is cut into (runs of the benchmark).
LOCALIZER_PARTS = 3
#: Duration (s) given to the localizer's brief events, for every estimator and GLMsingle alike (pyhrf gives 0;
#: GLMsingle needs a positive stimulus duration).
EVENT_DURATION = 1.0


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from.

    Attributes
    ----------
    name : str
        Benchmark name of the dataset.
    repository : str
        Public Git repository that ships the files.
    commit : str
        Commit the files were read at (``git show <commit>:<path>`` on a clone).
    licence : str
    design : str
        ``block`` or ``event-related``.
    what : str
        One line: the data.
    files : tuple of str
        Paths inside the repository.
    """

    name: str
    repository: str
    commit: str
    licence: str
    design: str
    what: str
    files: tuple[str, ...]


_HAXBY = "mvpa2/data/haxby2001/sub001/BOLD"
_PYHRF = "python/pyhrf/datafiles"

SOURCES: dict[str, Source] = {
    "haxby-slice": Source(
        "haxby-slice", "https://github.com/PyMVPA/PyMVPA", "20f0335f98bbb59a0e11bc0b7a469edf8681a9a1",
        "PyMVPA: MIT; the data are Haxby et al. (2001), public as openfMRI/OpenNeuro ds000105", "block",
        "Haxby 2001 subject 1, one axial slice (530 voxels), 12 runs x 121 volumes, TR 2.5 s, 8 categories",
        ("mvpa2/data/mask.nii.gz",
         *(f"{_HAXBY}/task001_run{r:03d}/{f}" for r in range(1, 13) for f in ("bold_1slice.nii.gz",
                                                                             "bold_events.tsv")))),
    "localizer-4regions": Source(
        "localizer-4regions", "https://github.com/pyhrf/pyhrf", "dd0a08559b06edd85562e42e7b50a81c7178c3b8",
        "pyhrf: CeCILL v2 (GPL-compatible); data shipped with it for its tests and demos", "event-related",
        "10-condition localizer, 1 run x 128 volumes, TR 2.4 s, 80 trials, 6443 voxels in 6 parcels",
        (f"{_PYHRF}/real_data_vol_4_regions_BOLD.nii.gz", f"{_PYHRF}/real_data_vol_4_regions_mask.nii.gz",
         f"{_PYHRF}/paradigm_loc.csv")),
    "localizer-subj0": Source(
        "localizer-subj0", "https://github.com/pyhrf/pyhrf", "dd0a08559b06edd85562e42e7b50a81c7178c3b8",
        "pyhrf: CeCILL v2 (GPL-compatible); data shipped with it for its tests and demos", "event-related",
        "10-condition localizer, another subject, 1 run x 125 volumes, TR 2.4 s, 80 trials, 1272 voxels",
        (f"{_PYHRF}/subj0_bold_session0.nii.gz", f"{_PYHRF}/subj0_parcellation.nii.gz", f"{_PYHRF}/paradigm_loc.csv")),
}


def _modality(condition: str) -> str:
    """Localizer condition -> how its stimulus came: ``audio`` (spoken) or ``visual`` (written, checkerboards)."""
    return "audio" if condition.endswith("audio") else "visual"


#: Decoding targets of each dataset (a function of a trial's label); the first is the one the goal is checked on.
#: The localizer's 10 conditions have 5 to 10 trials each, too few for the single trials of one 80-trial run to be
#: told apart reliably (accuracies of 0.1-0.35, chance 0.1); how the stimulus came (spoken: 30 trials, or seen: 50)
#: is a category its single trials carry.
TARGETS: dict[str, dict] = {
    "haxby-slice": {"category": str},
    "localizer-4regions": {"modality": _modality, "condition": str},
    "localizer-subj0": {"modality": _modality, "condition": str},
}


@dataclass
class RealDataset:
    """A real dataset, ready for the estimators.

    Attributes
    ----------
    name : str
    raw : list of ndarray, each (n_volumes, n_voxels), float32
        BOLD of the voxels as the source gives it (positive intensities), one array per run.
    onsets, durations : list of ndarray, each (n_trials_run,)
        Seconds from the run's first volume.
    labels : list of ndarray of str, each (n_trials_run,)
        Category or condition of each trial: the trials' stimulus ids (their repeats drive the estimators'
        cross-validation) and the first decoding target.
    repetition_time : float
    info : dict
        The source (repository, commit, files, licence) and how the runs were built.
    """

    name: str
    raw: list[np.ndarray]
    onsets: list[np.ndarray]
    durations: list[np.ndarray]
    labels: list[np.ndarray]
    repetition_time: float
    info: dict = field(default_factory=dict)

    @property
    def n_voxels(self) -> int:
        return int(self.raw[0].shape[1])

    def session_runs(self) -> list:
        """:class:`bids_recon.glm.SessionRun` s in percent signal change (fresh copies: the fits modify them)."""
        from bids_recon.glm import SessionRun, percent_signal_change

        runs = []
        for raw, onsets, durations, labels in zip(self.raw, self.onsets, self.durations, self.labels, strict=True):
            psc, _ = percent_signal_change(raw)
            runs.append(SessionRun(data=psc, onsets=onsets.copy(), durations=durations.copy(),
                                   stim_ids=labels.copy(), repetition_time=self.repetition_time,
                                   mean_intensity=raw.mean(axis=0)))
        return runs

    @property
    def targets(self) -> dict[str, list[np.ndarray]]:
        """Decoding targets, per run, by name; the first is the benchmark's (see :data:`TARGETS`)."""
        return {target: [np.asarray([make(label) for label in labels]) for labels in self.labels]
                for target, make in TARGETS[self.name].items()}

    def onset_volumes(self) -> list[np.ndarray]:
        """Onsets as volume indices, rounded to the nearest volume (GLMsingle's design)."""
        return [np.round(o / self.repetition_time).astype(int) for o in self.onsets]


# ----------------------------------------------------------------------------------------------------------
# reading the source


class _Reader:
    """Bytes of a repository's files, from a directory of files or a bare git directory."""

    def __init__(self, source: Path, commit: str):
        self.source, self.commit = Path(source), commit
        git_dir = self.source / ".git" if (self.source / ".git").exists() else self.source
        self.git_dir = git_dir if (git_dir / "HEAD").exists() else None

    def read(self, path: str) -> bytes:
        plain = self.source / path
        if plain.is_file():
            return plain.read_bytes()
        if self.git_dir is None:
            raise FileNotFoundError(f"{plain}: missing (is --source the repository's top folder?)")
        for rev in (self.commit, "HEAD"):
            proc = subprocess.run(["git", "--git-dir", str(self.git_dir), "show", f"{rev}:{path}"],
                                  capture_output=True)
            if proc.returncode == 0:
                return proc.stdout
        raise FileNotFoundError(f"{self.git_dir}: no {path} at {self.commit} or HEAD")

    def image(self, path: str) -> np.ndarray:
        import gzip

        import nibabel as nib

        data = self.read(path)
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        if len(data) < 348 or data[:3] == b"ver":  # a Git LFS pointer or a stub, not an image
            raise ValueError(f"{path}: {len(data)} bytes, not a NIfTI image (a Git LFS or annex pointer?)")
        return np.asarray(nib.Nifti1Image.from_bytes(data).dataobj)


def _haxby_slice(reader: _Reader) -> RealDataset:
    import pandas as pd

    mask = reader.image("mvpa2/data/mask.nii.gz").astype(bool)
    raw, onsets, durations, labels = [], [], [], []
    for run in range(1, 13):
        bold = reader.image(f"{_HAXBY}/task001_run{run:03d}/bold_1slice.nii.gz")
        raw.append(bold[mask].T.astype(np.float32))
        events = pd.read_csv(io.BytesIO(reader.read(f"{_HAXBY}/task001_run{run:03d}/bold_events.tsv")), sep="\t")
        onsets.append(events["onset"].to_numpy(float))
        durations.append(events["duration"].to_numpy(float))
        labels.append(events["trial_type"].to_numpy(str))
    return RealDataset("haxby-slice", raw, onsets, durations, labels, 2.5,
                       {"layout": "the 12 runs as recorded", "mask": "mvpa2/data/mask.nii.gz"})


def _paradigm(reader: _Reader) -> tuple[np.ndarray, np.ndarray]:
    """Onsets (s) and conditions of the localizer, in time order (``paradigm_loc.csv``: session, name, onset, ...)."""
    rows = [line.split() for line in reader.read(f"{_PYHRF}/paradigm_loc.csv").decode().splitlines() if line.strip()]
    onsets = np.array([float(r[2]) for r in rows])
    names = np.array([r[1].strip('"') for r in rows])
    order = np.argsort(onsets, kind="stable")
    return onsets[order], names[order]


def _localizer(reader: _Reader, name: str, bold_path: str, mask_path: str, parts: int) -> RealDataset:
    bold = reader.image(f"{_PYHRF}/{bold_path}").astype(np.float32)
    mask = (reader.image(f"{_PYHRF}/{mask_path}") > 0) & (bold.min(axis=-1) > 0)
    series = bold[mask].T  # (n_volumes, n_voxels)
    tr = 2.4
    onsets, names = _paradigm(reader)
    n_volumes = series.shape[0]
    bounds = np.linspace(0, n_volumes, parts + 1).round().astype(int)
    volumes = np.round(onsets / tr).astype(int)
    raw, run_onsets, run_durations, labels = [], [], [], []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        # a trial belongs to the part its onset falls in; one whose onset rounds to the part's end (no volume of its
        # own there: GLMsingle's design has none) is left out
        keep = (onsets >= start * tr) & (volumes < stop)
        raw.append(np.ascontiguousarray(series[start:stop]))
        run_onsets.append(onsets[keep] - start * tr)
        run_durations.append(np.full(int(keep.sum()), EVENT_DURATION))
        labels.append(names[keep])
    dropped = len(onsets) - sum(len(o) for o in run_onsets)
    return RealDataset(name, raw, run_onsets, run_durations, labels, tr,
                       {"layout": f"one run cut into {parts} consecutive parts at volumes {bounds.tolist()}; "
                                f"{dropped} trial(s) at a cut left out", "mask": mask_path,
                        "durations": f"{EVENT_DURATION} s for every trial (pyhrf gives 0: brief events)"})


def build(name: str, source: Path, parts: int = LOCALIZER_PARTS) -> RealDataset:
    """Build dataset ``name`` (a key of :data:`SOURCES`) from a copy of its repository at ``source``."""
    spec = SOURCES[name]
    reader = _Reader(source, spec.commit)
    if name == "haxby-slice":
        data = _haxby_slice(reader)
    elif name == "localizer-4regions":
        data = _localizer(reader, name, "real_data_vol_4_regions_BOLD.nii.gz", "real_data_vol_4_regions_mask.nii.gz",
                          parts)
    else:
        data = _localizer(reader, name, "subj0_bold_session0.nii.gz", "subj0_parcellation.nii.gz", parts)
    data.info.update(repository=spec.repository, commit=spec.commit, licence=spec.licence, design=spec.design,
                     what=spec.what, files=list(spec.files))
    return data


def save(data: RealDataset, out: Path) -> Path:
    """Write ``data`` to ``out/<name>.npz``."""
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"repetition_time": np.array(data.repetition_time), "info": np.array(json.dumps(data.info))}
    for i, (raw, onsets, durations, labels) in enumerate(zip(data.raw, data.onsets, data.durations, data.labels,
                                                             strict=True)):
        arrays.update({f"raw_{i}": raw, f"onsets_{i}": onsets, f"durations_{i}": durations,
                       f"labels_{i}": labels.astype(str)})
    path = out / f"{data.name}.npz"
    np.savez_compressed(path, **arrays)
    return path


def load(path: Path) -> RealDataset:
    """Read a dataset written by :func:`save`."""
    with np.load(path, allow_pickle=False) as f:
        n_runs = sum(1 for k in f.files if k.startswith("raw_"))
        return RealDataset(Path(path).stem, [f[f"raw_{i}"].astype(np.float32) for i in range(n_runs)],
                           [f[f"onsets_{i}"] for i in range(n_runs)], [f[f"durations_{i}"] for i in range(n_runs)],
                           [f[f"labels_{i}"].astype(str) for i in range(n_runs)], float(f["repetition_time"]),
                           json.loads(str(f["info"])))


def _which(source: Path) -> list[str]:
    """The datasets whose files ``source`` holds (by the repository's layout)."""
    names = []
    for name, spec in SOURCES.items():
        try:
            _Reader(source, spec.commit).read(spec.files[-1])
        except (FileNotFoundError, OSError):
            continue
        names.append(name)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print where each dataset comes from, and exit")
    parser.add_argument("--source", type=Path, help="a copy of the dataset's repository (working tree or git dir)")
    parser.add_argument("--datasets", nargs="+", choices=list(SOURCES), default=None,
                        help="datasets to build (default: every one whose files --source holds)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bids_recon_real"))
    parser.add_argument("--parts", type=int, default=LOCALIZER_PARTS, help="runs each single-run localizer is cut into")
    args = parser.parse_args()
    if args.list or args.source is None:
        for spec in SOURCES.values():
            print(f"{spec.name} ({spec.design}): {spec.what}\n  git clone {spec.repository}  (read at {spec.commit})\n"
                  f"  licence: {spec.licence}\n  files: {', '.join(spec.files[:3])}"
                  f"{' ...' if len(spec.files) > 3 else ''}")
        return 0 if args.list else 64
    names = args.datasets or _which(args.source)
    if not names:
        print(f"{args.source}: holds none of {', '.join(SOURCES)} (see --list)", file=sys.stderr)
        return 66
    for name in names:
        data = build(name, args.source, args.parts)
        path = save(data, args.out)
        print(f"{path}: {len(data.raw)} runs x {[r.shape[0] for r in data.raw]} volumes, {data.n_voxels} voxels, "
              f"{sum(len(o) for o in data.onsets)} trials of {len(np.unique(np.concatenate(data.labels)))} labels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
