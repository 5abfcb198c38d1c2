"""nipype's MultiProc whose workers, and every process a node starts, end with the run.

nipype's MultiProc runs nodes in a :class:`concurrent.futures.ProcessPoolExecutor`; its workers outlive their
parent: after ``kill -9`` of the main process they keep running their node (and writing into OUTPUT_DIR).
:class:`GuardedMultiProcPlugin` ties them to the run in two ways:

- each worker asks the kernel for ``SIGKILL`` when its parent ends (Linux ``prctl(PR_SET_PDEATHSIG)``;
  elsewhere a thread that watches the parent);
- a guard process (:data:`GUARD_CODE`, a few lines of Python with no imports beyond the standard library) leads
  a process group that every worker joins, so that the processes a node starts (and theirs) are in it too; when
  the main process ends in any way (``kill -9`` included: the guard sees its parent change) the guard kills the
  whole group, itself last. When the run ends normally or with an error, the plugin kills the group itself.

A side effect: the workers are no longer in the terminal's foreground process group, so Ctrl-C interrupts the
main process only, which then ends them (as it does on any error).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from nipype.pipeline.plugins.multiproc import MultiProcPlugin, process_initializer

#: ``PR_SET_PDEATHSIG`` of ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1

#: The guard: sleeps while its parent (the main process, ``argv[1]``) lives, then kills its process group.
GUARD_CODE = """\
import os, signal, sys, time
parent = int(sys.argv[1])
while os.getppid() == parent:
    time.sleep(0.2)
os.killpg(0, signal.SIGKILL)
"""


def die_with_parent(parent_pid: int | None) -> None:
    """End this process with ``SIGKILL`` as soon as its parent process ends.

    Parameters
    ----------
    parent_pid : int or None
        The parent expected now (the main process); when this process already has another parent (the main one
        ended before the call), it exits at once. ``None``: the parent is not known (a forkserver's child) and is
        not checked.
    """
    watched = os.getppid() if parent_pid is None else parent_pid
    armed = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    if os.getppid() != watched:  # the parent ended before the kernel was asked
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(watched,), name="die_with_parent", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)


def worker_initializer(cwd: str, parent_pid: int | None, group: int | None) -> None:
    """Set up a pool worker: nipype's own set-up, then join the guard's process group and die with the parent."""
    process_initializer(cwd)
    if group is not None:
        with contextlib.suppress(OSError):  # the guard is gone: the run is ending anyway
            os.setpgid(0, group)
    die_with_parent(parent_pid)


class RunGuard:
    """The guard process: its process group holds the workers and everything they start.

    Attributes
    ----------
    process : subprocess.Popen
        The guard (a ``python -I -c GUARD_CODE`` process, leader of its own process group).
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-I", "-c", GUARD_CODE, str(os.getpid())],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, process_group=0)

    @property
    def group(self) -> int:
        """The process group the workers join (the guard's pid)."""
        return self.process.pid

    def stop(self) -> None:
        """Kill every process of the group (workers, what their nodes started, the guard) and reap the guard."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


class GuardedMultiProcPlugin(MultiProcPlugin):
    """nipype's MultiProc (same ``plugin_args``) whose workers and their processes end with the run.

    The guard and the worker pool are made when the workflow starts running (:meth:`run`), and ended when it
    stops, normally or not; a ``kill -9`` of the main process ends them within a fraction of a second.
    """

    def __init__(self, plugin_args: dict | None = None) -> None:
        super().__init__(plugin_args=plugin_args)
        self._guard: RunGuard | None = None
        self._stopping = False

    def _start_pool(self) -> None:
        """Replace nipype's pool (no worker started yet) with one whose workers join the guard's group."""
        self.pool.shutdown(wait=False)
        context = mp.get_context(self.plugin_args.get("mp_context"))
        parent = None if context.get_start_method() == "forkserver" else os.getpid()
        self._guard = RunGuard()
        self.pool = ProcessPoolExecutor(max_workers=self.processors, initializer=worker_initializer,
                                        initargs=(self._cwd, parent, self._guard.group), mp_context=context)

    def run(self, graph, config, updatehash: bool = False):
        """Run the graph (nipype's MultiProc); end every worker and the processes they started, however it ends."""
        self._start_pool()
        try:
            return super().run(graph, config, updatehash=updatehash)
        finally:
            self._stopping = True
            if self._guard is not None:
                self._guard.stop()
            self.pool.shutdown(wait=False, cancel_futures=True)

    def _async_callback(self, args) -> None:
        """nipype's: store a finished task's result; the tasks that :meth:`run` ended on its way out (their futures
        broken or cancelled) are dropped instead of printing a traceback."""
        if self._stopping and (args.cancelled() or args.exception() is not None):
            return
        super()._async_callback(args)


def register_plugin() -> str:
    """Make :class:`GuardedMultiProcPlugin` known to nipype by name; returns the name for ``workflow.run(plugin=)``.

    nipype finds a plugin named ``NAME`` as ``nipype.pipeline.plugins.NAMEPlugin``.
    """
    import nipype.pipeline.plugins as plugins

    plugins.GuardedMultiProcPlugin = GuardedMultiProcPlugin
    return GuardedMultiProcPlugin.__name__.removesuffix("Plugin")
