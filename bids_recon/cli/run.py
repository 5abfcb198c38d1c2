"""``bids_recon`` entry point: parse -> configure -> validate -> build -> run -> exit code."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

from bids_recon import __version__
from bids_recon.cli.parser import ANALYSIS_LEVELS, LEVEL_ALIASES, build_parser
from bids_recon.config import Config
from bids_recon.errors import (
    ERROR_DIR_ENV,
    BidsReconError,
    ExitCode,
    InvalidBidsError,
    MissingInputError,
    UnknownAnalysisLevelError,
    UsageError,
    exit_code_for,
    read_errors,
)

LOGGER = logging.getLogger("bids_recon")

#: The arguments of the running command (for the "incomplete" markers: how to run it again).
_ARGV: list[str] = []


def _is_within(path: Path, parent: Path) -> bool:
    path, parent = path.resolve(), parent.resolve()
    return path == parent or path.is_relative_to(parent)


def build_config(args, parser) -> Config:
    """The run's configuration: the defaults, then ``--config-file``, then every flag typed (they always win).

    Raises
    ------
    UsageError
        A bad or unknown setting from the file or the command line (exit 64), named with its source.
    """
    from bids_recon.cli.parser import flags_of, typed_settings
    from bids_recon.config import flatten, merge, read_toml

    layers = []
    config_file = getattr(args, "config_file", None)
    if config_file is not None:
        layers.append((dict(flatten(read_toml(config_file))), f"config file {config_file}"))
    typed = typed_settings(args)
    flags = flags_of(parser)
    layers.append((typed, {key: f"the command line ({flags.get(key, key)})" for key in typed}))
    preset = preset_layer(dict(merge(*layers)[0]))
    data, sources = merge(*([preset] if preset else []), *layers)
    config = Config.from_dict(data, sources)
    config.given = frozenset(sources)  # the settings a preset, a file or a flag set (the others are defaults)
    ex = config.execution
    ex.check_only = bool(typed.get("execution.check_only", False))  # never from a file: a saved run must compute
    if not ex.work_dir:
        ex.work_dir = str(Path(ex.output_dir).absolute().parent / "work")
    return config


def preset_layer(chosen: dict) -> tuple[dict, str] | None:
    """The ``--dataset`` preset's values as a layer below the file and the flags (``None`` without a preset).

    An unknown name gives no layer: the configuration's validation refuses it (exit 64, with a close match).
    """
    from bids_recon.datasets import PRESETS

    execution = chosen.get("execution") or {}
    name = execution.get("dataset") if isinstance(execution, dict) else None
    if not isinstance(name, str) or name not in PRESETS:
        return None
    bids_dir = execution.get("bids_dir")
    preset = PRESETS[name]
    values = preset.adapt(preset.settings_for(Path(bids_dir) if bids_dir else None), chosen)
    return values, f"the --dataset {name} preset"


def importing(config: Config) -> bool:
    """Whether the betas are imported (``--betas``): then no fMRIPrep derivative is needed."""
    from bids_recon.glm.importers import parse_betas

    return parse_betas(config.workflow.glm.betas) is not None


def check_paths(config: Config) -> None:
    """Refuse inputs and outputs that cannot work, before anything is written."""
    ex = config.execution
    bids_dir, output_dir = Path(ex.bids_dir), Path(ex.output_dir)
    if not bids_dir.is_dir():
        raise MissingInputError("BIDS dataset folder does not exist", bids_dir)
    if _is_within(output_dir, bids_dir):
        raise UsageError(f"output_dir {output_dir} must not be bids_dir or inside it: write derivatives elsewhere")
    if ex.analysis_level == "participant" and "fmriprep" not in ex.derivatives and not importing(config):
        default = bids_dir / "derivatives" / "fmriprep"
        if not default.is_dir():
            raise MissingInputError(
                "fMRIPrep derivatives not found: pass -d fmriprep=PATH, or give them after the raw dataset in "
                "--input-dataset (looked in bids_dir/derivatives/fmriprep)",
                bids_dir,
            )
        ex.derivatives["fmriprep"] = str(default)


#: Validator errors that are not errors when the images are declared to be outside the dataset (``--stimuli-dir``):
#: BOLD5000's ``stim_file`` names images its BIDS tree does not hold.
OUTSIDE_STIMULI_CODES = ("STIMULUS_FILE_MISSING",)


def validate_bids(bids_dir: Path, tolerated: tuple[str, ...] = ()) -> None:
    """Run bids-validator-deno on the raw dataset; errors stop the run with exit code 16.

    Errors whose code is in ``tolerated`` are logged as warnings (e.g. :data:`OUTSIDE_STIMULI_CODES` when the
    stimuli are in folders outside the dataset).
    """
    import json

    beside = Path(sys.executable).parent / "bids-validator-deno"  # a venv's bin/ when it is not on PATH
    exe = shutil.which("bids-validator-deno") or (str(beside) if beside.exists() else None)
    if exe is None:
        LOGGER.warning("bids-validator-deno not found: skipping BIDS validation (pip install bids-validator-deno)")
        return
    proc = subprocess.run([exe, str(bids_dir), "--ignoreWarnings", "--format", "json"], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        try:
            issues = json.loads(proc.stdout)["issues"]["issues"]
        except (json.JSONDecodeError, KeyError, TypeError):
            issues = None
        errors = None if issues is None else [i for i in issues if i.get("severity") == "error"]
        if errors is not None and errors and all(i.get("code") in tolerated for i in errors):
            LOGGER.warning("BIDS validator: %d %s error(s) tolerated: the stimuli are outside the dataset "
                           "(--stimuli-dir)", len(errors), ", ".join(sorted({i["code"] for i in errors})))
            return
        shown = "\n".join(f"[{i.get('code')}] {i.get('location', '')}" for i in (errors or [])[:50])
        LOGGER.error("BIDS validator output:\n%s", shown or proc.stdout[-5000:] + proc.stderr[-2000:])
        codes = sorted({str(i.get("code")) for i in errors or []})
        raise InvalidBidsError("the BIDS validator found errors" + (f" ({', '.join(codes)})" if codes else "")
                               + "".join(f"; {hint}" for hint in _validator_hints(bids_dir, errors or []))
                               + " (see the log; --skip-bids-validation skips it)", bids_dir)
    LOGGER.info("BIDS validation passed")


def _validator_hints(bids_dir: Path, errors: list[dict]) -> list[str]:
    """How to fix the validator errors whose cause bids_recon can tell (a RepetitionTime in milliseconds)."""
    from bids_recon.bids.layout import tr_unit_problem

    hints = []
    for error in errors:
        if error.get("code") == "REPETITION_TIME_MISMATCH" and error.get("location"):
            hint = tr_unit_problem(bids_dir / str(error["location"]).lstrip("/"), bids_dir)
            if hint and hint not in hints:
                hints.append(hint)
    return hints[:3]


def setup_logging(config: Config, log_dir: Path) -> Path:
    """Log to the console and to ``log_dir/bids_recon.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / "bids_recon.log"
    level = {"INFO": logging.INFO, "VERBOSE": 15, "DEBUG": logging.DEBUG}.get(config.execution.log_level,
                                                                            logging.INFO)
    logging.addLevelName(15, "VERBOSE")
    fmt = logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s | %(message)s", "%y%m%d-%H:%M:%S")
    root = logging.getLogger("bids_recon")
    root.handlers.clear()
    root.setLevel(level)
    handlers = (logging.StreamHandler(sys.stderr), logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    from nipype import logging as nipype_logging

    nipype_logging.getLogger("nipype.workflow").addHandler(handlers[1])
    return log_file


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(n)


def main(argv: list[str] | None = None) -> int:
    """Run bids_recon; returns the BIDS-App exit code."""
    from bids_recon.cli.boutiques import render_descriptor

    parser = build_parser(render_exec_spec=render_descriptor)
    _ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)  # usage errors exit 64 here; a derivatives dataset that cannot be named raises
        level = getattr(args, "execution.analysis_level")
        if level not in ANALYSIS_LEVELS:
            raise UnknownAnalysisLevelError(
                f"unknown analysis level '{level}' (choose: {', '.join(ANALYSIS_LEVELS)}; or the execution "
                f"specification's {', '.join(LEVEL_ALIASES)})")
        config = build_config(args, parser)
        check_paths(config)
        from bids_recon.cli.confine import confined

        ex = config.execution  # the group level needs no work dir: its caches may go in OUT/logs for the run
        fallback = Path(ex.output_dir) / "logs" / f".cache-{os.getpid()}" if ex.analysis_level == "group" else None
        with confined(ex.work_dir, fallback) as changed:  # before matplotlib, nipype, torch are imported
            return run_level(config, changed)
    except BidsReconError as exc:
        print(f"bids_recon: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)


def run_level(config: Config, confined: dict[str, str]) -> int:
    """Log, save the configuration, run the analysis level; returns the exit code (errors logged)."""
    ex = config.execution
    ex.run_id = f"{datetime.now():%Y%m%d-%H%M%S}_{uuid.uuid4().hex[:8]}"
    from bids_recon.bids.derivatives import logs_dir

    log_dir = logs_dir(Path(ex.output_dir), ex.run_id)
    log_file = setup_logging(config, log_dir)
    from bids_recon.rois.templates import templateflow_home

    ex.templateflow_home = str(templateflow_home())  # read there, never written
    LOGGER.log(15, "Caches and temporary files of this run: %s", ", ".join(f"{k}={v}" for k, v in confined.items()))
    config.save(log_dir / "bids_recon.toml")
    LOGGER.info("bids_recon %s, %s level; configuration saved to %s", __version__, ex.analysis_level,
                log_dir / "bids_recon.toml")
    try:
        if ex.analysis_level == "group":
            from bids_recon.workflows.group import run_group

            run_group(config)
        else:
            run_participants(config, log_dir)
    except BidsReconError as exc:
        LOGGER.error("%s", exc)
        return int(exc.exit_code)
    except Exception as exc:  # an unexpected failure: keep the traceback in the log
        LOGGER.exception("bids_recon failed: %s", exc)
        return int(exit_code_for(exc))
    LOGGER.info("Finished. Outputs in %s; log in %s", ex.output_dir, log_file)
    return int(ExitCode.SUCCESS)


def run_participants(config: Config, log_dir: Path) -> None:
    """Collect inputs, build and run the participant workflows, write dataset-level files."""
    from bids_recon.bids.derivatives import (
        source_datasets,
        write_bidsignore,
        write_dataset_description,
        write_descriptions,
    )
    from bids_recon.bids.layout import collect_inputs

    ex, npp = config.execution, config.nipype
    bids_dir, output_dir = Path(ex.bids_dir), Path(ex.output_dir)
    imports = importing(config)
    if not ex.skip_bids_validation and not ex.reports_only:
        if imports and not (bids_dir / "dataset_description.json").is_file():
            LOGGER.info("%s is not a BIDS dataset: the imported betas (--betas) carry the trials, no validation",
                        bids_dir)
        else:
            validate_bids(bids_dir, OUTSIDE_STIMULI_CODES if config.workflow.stimuli.dirs else ())
    if imports:
        inputs = _collect_imported(config)
    else:
        if config.workflow.betas_only:
            _betas_only_space(config)
        inputs = collect_inputs(bids_dir, Path(ex.derivatives["fmriprep"]), ex.participant_label, ex.session_label,
                                ex.task_id, ex.bids_filters, config.workflow.space, config.workflow.resolution)
        LOGGER.info("Participants: %s", ", ".join(f"{s} ({len(i.runs)} runs)" for s, i in inputs.items()))
    _resolution_of_inputs(config, inputs)
    if config.workflow.betas_only:
        _betas_only_trials(config, inputs)
    if not ex.reports_only:
        check_collected_inputs(config, inputs)
    if ex.check_only:
        from bids_recon.reports.citation import write_citation
        from bids_recon.workflows.base import init_bids_recon_wf

        workflow = init_bids_recon_wf(config, inputs)  # resolves the model, checks every node's settings
        LOGGER.info("Methods boilerplate: %s", write_citation(workflow, config, log_dir)[0])
        LOGGER.info("--check-only: inputs and workflow (%d nodes) are fine; nothing was computed",
                    len(workflow.list_node_names()))
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_description(output_dir, source_datasets(bids_dir, ex.derivatives, _imported_source(config) if imports
                                                          else None, ex.templateflow_home))
    write_bidsignore(output_dir)

    if ex.reports_only:
        from bids_recon.workflows.participant import rebuild_report

        for subject_inputs in inputs.values():
            LOGGER.info("Report: %s", rebuild_report(config, subject_inputs))
        return

    _set_threads(npp.omp_nthreads)
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    error_dir = log_dir / "node_errors"
    os.environ[ERROR_DIR_ENV] = str(error_dir)
    from bids_recon.workflows.base import init_bids_recon_wf, nipype_plugin

    workflow = init_bids_recon_wf(config, inputs)
    from bids_recon.reports.citation import write_citation

    LOGGER.info("Methods boilerplate: %s", write_citation(workflow, config, log_dir)[0])
    plugin, plugin_args = nipype_plugin(config)
    LOGGER.info("Running the workflow (%s, %s) in %s", plugin, plugin_args, ex.work_dir)
    # nipype's MultiProc runs gc.collect() before every submission and after every node it runs itself (33 passes of
    # 0.26 s each in a tiny run, cProfile); freezing moves the imported modules and the graph out of their view
    gc.freeze()
    markers = mark_incomplete(config, inputs, log_file=log_dir / "bids_recon.log")
    try:
        workflow.run(plugin=plugin, plugin_args=plugin_args)
    except Exception as exc:
        unmark_complete(config, inputs, markers, finished=False)
        errors = read_errors(str(error_dir))
        if errors:
            for err in errors[1:]:  # the first one is reported as the run's error
                LOGGER.error("also failed, %s: %s", err["where"], err["message"])
            raise _error_from_record(errors[0]) from exc
        raise
    unmark_complete(config, inputs, markers, finished=True)
    write_descriptions(output_dir)
    for subject in inputs:
        LOGGER.info("Report: %s", output_dir / f"sub-{subject}.html")


def mark_incomplete(config: Config, inputs: dict, log_file: Path) -> dict[str, Path]:
    """Write each participant's ``sub-<label>_INCOMPLETE.txt`` before the workflow writes any of its outputs, and
    remove the temporary files that a killed run of the participant left
    (:func:`~bids_recon.io.remove_stale_temporaries`).

    Returns
    -------
    dict
        Participant label -> marker path.
    """
    import shlex
    import socket

    from bids_recon.bids.derivatives import write_incomplete_marker
    from bids_recon.io import remove_stale_temporaries

    ex = config.execution
    out = Path(ex.output_dir)
    facts = dict(started=f"{datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}", run_id=ex.run_id,
                 version=__version__, pid=os.getpid(), host=socket.gethostname(),
                 log=log_file.relative_to(out) if _is_within(log_file, out) else log_file,
                 work_dir=Path(ex.work_dir).absolute(), command=shlex.join(["bids_recon", *_ARGV]))
    markers = {}
    for subject in inputs:
        markers[subject] = write_incomplete_marker(out, subject, **facts)
        for stale in remove_stale_temporaries(out, subject):  # a killed run's half-written files
            LOGGER.info("Removed %s, left by a run that was stopped while writing it", stale.relative_to(out))
    return markers


def unmark_complete(config: Config, inputs: dict, markers: dict[str, Path], finished: bool) -> None:
    """Remove the markers of the participants this run completed: all when the workflow ``finished``; otherwise
    those whose report (the last node, run after every other output of the participant) was written after their
    marker. A failed participant keeps its marker."""
    from bids_recon.workflows.participant import subject_outputs

    out = Path(config.execution.output_dir)
    for subject, marker in markers.items():
        report = out / subject_outputs(config, inputs[subject]).report()
        done = finished or (report.is_file() and marker.is_file()
                            and report.stat().st_mtime_ns > marker.stat().st_mtime_ns)
        if done:
            marker.unlink(missing_ok=True)
        else:
            LOGGER.error("sub-%s is incomplete (%s stays): rerun the participant level with the same -w %s",
                         subject, marker.name, config.execution.work_dir)


def _imported_source(config: Config) -> Path:
    from bids_recon.glm.importers import parse_betas

    return parse_betas(config.workflow.glm.betas).path


def _collect_imported(config: Config) -> dict:
    """The participants of an import; the outputs take the importer's space (NSD: func1pt8mm) and ``res-``."""
    from bids_recon.bids.layout import collect_imported

    ex, wf = config.execution, config.workflow
    inputs = collect_imported(wf.glm.betas, Path(ex.bids_dir), wf.stimuli, ex.participant_label, ex.session_label,
                              ex.task_id)
    plan = next(iter(inputs.values())).imported
    if plan.space and (plan.space, plan.resolution) != (wf.space, wf.resolution):
        LOGGER.info("Imported betas are in space %s%s: outputs are named so", plan.space,
                    f" res-{plan.resolution}" if plan.resolution else "")
        wf.space, wf.resolution = plan.space, plan.resolution
    LOGGER.info("Participants: %s", ", ".join(f"{s} ({i.imported.n_trials} imported trials)"
                                              for s, i in inputs.items()))
    return inputs


def _betas_only_space(config: Config) -> None:
    """``--betas-only`` needs no atlas, so any space will do: where nobody chose ``--space`` and the derivatives have no
    preprocessed BOLD in the default space but exactly one other (space, res-), that one is used (logged, and saved in
    the run's configuration)."""
    from bids_recon.bids.fmriprep import index_subject, spaces_of

    wf, ex = config.workflow, config.execution
    if "workflow.space" in getattr(config, "given", ()):
        return
    fmriprep_dir = Path(ex.derivatives["fmriprep"])
    subjects = [s.removeprefix("sub-") for s in ex.participant_label] or sorted(
        p.name.removeprefix("sub-") for p in fmriprep_dir.glob("sub-*") if p.is_dir())
    pairs = {pair for subject in subjects for pair in spaces_of(index_subject(fmriprep_dir, subject))}
    if not pairs or any(space == wf.space for space, _ in pairs) or len(pairs) != 1:
        return
    (space, res), = pairs
    LOGGER.info("--betas-only: no preprocessed BOLD in space %s; the only one there is space-%s%s, used (choose "
                "another with --space/--res)", wf.space, space, f" res-{res}" if res else " (no res-)")
    wf.space, wf.resolution = space, res


def _betas_only_trials(config: Config, inputs: dict) -> None:
    """``--betas-only`` on events that name no stimulus: the trials are the rows of their ``trial_type`` column
    (recorded in the saved configuration, so that the run can be reproduced from it)."""
    from bids_recon.design.events import load_events
    from bids_recon.design.trials import betas_only_column

    if importing(config):
        raise UsageError("--betas-only estimates single-trial betas with the GLM, --betas imports them: choose one")
    stimuli = config.workflow.stimuli
    first = next(run for subject in inputs.values() for run in subject.runs)
    column = betas_only_column(load_events(first.events).columns, stimuli, first.events)
    if column is not None:
        LOGGER.info("--betas-only: the events name no stimulus; trials are the rows of their '%s' column (each "
                    "condition's presentations counted as repeats)", column)
        stimuli.column = column


def _resolution_of_inputs(config: Config, inputs: dict) -> None:
    """Outputs carry the inputs' ``res-``: none when no preprocessed BOLD has one (``space-T1w``, legacy names), the
    inputs' when they all have the same one."""
    from bids_recon.bids.fmriprep import parse_entities

    found = {str((parse_entities(r.preproc_bold.name) or ({},))[0].get("res")) for i in inputs.values() for r in i.runs}
    if found == {"None"} and config.workflow.resolution is not None:
        LOGGER.info("The preprocessed BOLD files have no res- entity: outputs are named without one (--res none)")
        config.workflow.resolution = None
    elif len(found) == 1 and "None" not in found and config.workflow.resolution is None:
        config.workflow.resolution = found.pop()
        LOGGER.info("The preprocessed BOLD files are res-%s: outputs are named so", config.workflow.resolution)


def check_collected_inputs(config: Config, inputs: dict) -> None:
    """Check what ties the input files together (grids, confounds, stimuli, split, ROIs) and what the generator
    needs (captions, a model), before any work; say which metrics will not be computed (weights not on disk)."""
    from bids_recon.bids.checks import check_inputs
    from bids_recon.generate.card import generator_card
    from bids_recon.workflows.evaluation import log_skipped_metrics

    wf = config.workflow
    if importing(config):
        from bids_recon.bids.checks import check_imported_inputs

        checked = check_imported_inputs(inputs, Path(config.execution.bids_dir), wf.glm.betas, wf.stimuli, wf.rois,
                                        need_training=not wf.decoding.decoders_from)
    else:
        checked = check_inputs(inputs, Path(config.execution.bids_dir), wf.stimuli, wf.glm.confounds,
                               None if wf.betas_only else wf.rois, betas_only=wf.betas_only,
                               need_training=not wf.decoding.decoders_from)
    if wf.betas_only:  # no generator, features, metrics
        return
    card = generator_card(wf.generate.generator)
    card.check_inputs(config, checked)
    card.prepare(config)
    log_skipped_metrics(config)


def _error_from_record(record: dict) -> BidsReconError:
    from bids_recon import errors

    cls = getattr(errors, str(record.get("type")), BidsReconError)
    if not (isinstance(cls, type) and issubclass(cls, BidsReconError)):
        cls = BidsReconError
    return cls(str(record["message"]))


if __name__ == "__main__":
    raise SystemExit(main())
