"""The top-level workflow: one participant sub-workflow each, and the nipype execution settings."""

from __future__ import annotations

import os
from pathlib import Path

from nipype import config as nipype_config
from nipype import logging as nipype_logging
from nipype.pipeline import engine as pe

from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.workflows.multiproc import register_plugin
from bids_recon.workflows.participant import init_participant_wf


def init_bids_recon_wf(config: Config, inputs: dict[str, SubjectInputs]) -> pe.Workflow:
    """Build the workflow of every selected participant, in the work directory."""
    ex = config.execution
    nipype_config.update_config({
        "execution": {
            "crashdump_dir": str(Path(ex.output_dir) / "logs" / ex.run_id / "crash"),
            "crashfile_format": "txt",
            "stop_on_first_crash": ex.stop_on_first_crash,
            "remove_unnecessary_outputs": False,
            "poll_sleep_duration": config.nipype.poll_sleep_duration,
            "hash_method": "content",
        },
        "monitoring": {"enabled": False},
        # node start/finish lines only with -v, the scheduler's chatter only with -vv
        "logging": {name: {"INFO": "WARNING", "VERBOSE": "INFO"}.get(ex.log_level, "DEBUG")
                    for name in ("workflow_level", "interface_level", "utils_level")},
    })
    nipype_logging.update_logging(nipype_config)
    workflow = pe.Workflow(name="bids_recon_wf", base_dir=ex.work_dir)
    for subject, subject_inputs in inputs.items():
        workflow.add_nodes([init_participant_wf(config, subject_inputs, name=f"sub_{subject}_wf")])
    for name in workflow.list_node_names():
        node = workflow.get_node(name)
        if getattr(node.interface, "writes_outputs", False):
            node.overwrite = True  # rewrite outputs on every run, even when the node is cached
    return workflow


def nipype_plugin(config: Config) -> tuple[str, dict]:
    """The nipype plugin's name and its arguments from the configuration (``workflow.run(plugin=, plugin_args=)``).

    MultiProc runs as ``GuardedMultiProc`` (:class:`bids_recon.workflows.multiproc.GuardedMultiProcPlugin`, made
    known to nipype here): nipype's MultiProc, same arguments, whose workers and the processes they start end with
    the run, ``kill -9`` of the main process included. Other plugins (``--use-plugin``) are nipype's.
    """
    npp = config.nipype
    args = dict(npp.plugin_args)
    if npp.plugin == "MultiProc":
        args.setdefault("n_procs", npp.nprocs or os.cpu_count() or 1)
        if npp.mem_gb is not None:
            args.setdefault("memory_gb", npp.mem_gb)
        args.setdefault("raise_insufficient", False)
        return register_plugin(), args
    return npp.plugin, args
