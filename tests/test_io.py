"""Atomic writes and what a killed run leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bids_recon.io import atomic_write_text, remove_stale_temporaries

# A writer killed between mkstemp and the rename: the temporary stays under its hidden name.
_KILLED_WRITER = """
import sys, time
from pathlib import Path
from bids_recon.io import atomic_write
def write(tmp):
    tmp.write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(60)
atomic_write(Path(sys.argv[1]), write)
"""


def _killed_mid_write(path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_temporaries_of_a_killed_participant_are_removed_and_no_one_elses(tmp_path: Path) -> None:
    out = tmp_path / "out"
    mine = out / "sub-01" / "ses-01" / "func" / "sub-01_ses-01_task-x_stat-effect_statmap.nii.gz"
    other = out / "sub-010" / "func" / "sub-010_task-x_stat-effect_statmap.nii.gz"
    report = out / "sub-01.html"
    for path in (mine, other, report):
        _killed_mid_write(path)
    left = sorted(p.name for p in out.rglob(".*"))
    assert len(left) == 3 and not mine.exists() and not report.exists(), left
    kept = atomic_write_text(out / "sub-01" / ".hidden_but_ours_to_keep.txt", "user file")

    removed = remove_stale_temporaries(out, "01")

    assert sorted(p.name for p in removed) == sorted(n for n in left if not n.startswith(".sub-010"))
    remaining = sorted(p.relative_to(out).as_posix() for p in out.rglob(".*"))
    others = [p.relative_to(out).as_posix() for p in other.parent.glob(".*")]
    assert len(others) == 1  # sub-010's temporary is not sub-01's to remove
    assert remaining == sorted([kept.relative_to(out).as_posix(), *others])
    assert remove_stale_temporaries(tmp_path / "missing", "01") == []


def test_an_npz_member_is_memory_mapped_through_a_copy(tmp_path: Path) -> None:
    import numpy as np
    import pytest

    from bids_recon.errors import BadDataError
    from bids_recon.io import npz_array_mapped, save_npz

    features = np.random.default_rng(0).standard_normal((30, 7)).astype(np.float32)
    npz = save_npz(tmp_path / "f.npz", stim_ids=np.arange(30).astype(str), features=features)
    mapped = npz_array_mapped(npz, "features", tmp_path / "scratch" / "f.npy")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, features)
    np.testing.assert_array_equal(npz_array_mapped(npz, "features", tmp_path / "scratch" / "f.npy"), features)
    assert [p.name for p in (tmp_path / "scratch").iterdir()] == ["f.npy"]  # no temporary left
    with pytest.raises(BadDataError, match="no array 'betas'.*features"):
        npz_array_mapped(npz, "betas", tmp_path / "scratch" / "b.npy")
