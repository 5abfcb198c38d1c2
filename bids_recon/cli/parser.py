"""The BIDS-App command line, built in one function with argument groups (as fMRIPrep does).

Every option's ``dest`` is the dotted key of the setting it sets (``workflow.glm.estimator``) and its parser default
is "not given" (:data:`argparse.SUPPRESS`), so only flags the user typed reach the configuration, where they win
over ``--config-file`` (a flag typed at its default value too). Help texts, allowed values and the defaults shown
come from the settings' declarations (:func:`bids_recon.params.setting`); values are validated with the rest of the
configuration (:meth:`bids_recon.config.Config.from_dict`), never here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bids_recon import __version__
from bids_recon.config import Config
from bids_recon.errors import ExitCode
from bids_recon.generate.card import generator_cards
from bids_recon.params import choices_of, default_of, doc_of, locate

ANALYSIS_LEVELS = ("participant", "group")
#: The BIDS-Apps execution specification's names of our analysis levels (its ``AnalysisLevel`` choices are among
#: run, session, subject, dataset, meta), accepted beside the BIDS-Apps 1.0 names and saved as these.
LEVEL_ALIASES = {"subject": "participant", "dataset": "group"}
#: ``dest`` of the options that are not settings (they say where settings come from).
CONFIG_FILE_DEST = "config_file"
#: ``dest`` of ``--input-dataset`` (not a setting: its first path is ``execution.bids_dir``, the others derivatives).
INPUT_DATASET_DEST = "input_dataset"


class _Parser(argparse.ArgumentParser):
    """argparse with the BIDS-App exit code for usage errors (64 instead of 2), positional arguments that may come
    between options, and the two forms of the input, output and analysis level resolved into settings."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage()
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """Parse ``args`` (``sys.argv[1:]`` when ``None``); see :func:`resolve_bids_app_forms` for what follows.

        Positional arguments may come before, between or after options (``BIDS_DIR OUT --nprocs 2 participant``), as
        with the required positional arguments of earlier versions.
        """
        parsed = self.parse_intermixed_args(args, namespace)
        resolve_bids_app_forms(self, parsed)
        return parsed


class _HelpFormatter(argparse.HelpFormatter):
    """Appends the setting's allowed values and default (read from its declaration) to each option's help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        choices = getattr(action, "setting_choices", None)
        if choices:
            text += f" (one of: {', '.join(str(c) for c in choices)})"
        default = getattr(action, "setting_default", None)
        if default not in (None, "", [], {}) and action.nargs != 0:
            text += f" (default: {_show(default)})"
        return text.replace("%", "%%")


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _absolute(text: str) -> str:
    return str(Path(text).expanduser().absolute())


def _absolute_if_exists(text: str) -> str:
    """A path made absolute when it exists (``--model``: a folder, or else a hub id)."""
    path = Path(text).expanduser()
    return str(path.absolute()) if path.exists() else text


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    return name, value


def _key_path(text: str) -> tuple[str, str]:
    name, value = _key_value(text)
    return name, _absolute(value)


def _roi_mask(text: str) -> tuple[str, str]:
    from bids_recon.rois.labels import split_roi_spec

    name, spec = _key_value(text)
    path, labels = split_roi_spec(spec)  # paths made absolute: workflow nodes run in their own folders
    return name, _absolute(path) + (f":{labels}" if labels else "")


def _betas(text: str) -> str:
    """``FORMAT=PATH[:OPTIONS]`` with ``PATH`` (and a ``mask=`` option's path) made absolute; ``none`` as is."""
    from bids_recon.errors import UsageError
    from bids_recon.glm.importers.base import split_betas_spec

    if text.strip().lower() in ("", "none"):
        return text.strip().lower()
    try:
        fmt, path, options = split_betas_spec(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    options = {k: _absolute(v) if k == "mask" else v for k, v in options.items()}
    return f"{fmt}={_absolute(path)}" + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")


def _presets() -> list[str]:
    from bids_recon.datasets import PRESETS

    return list(PRESETS)


def _resolution(text: str) -> str | None:
    return None if text.strip().lower() in ("none", "") else text


def _json_filters(text: str) -> dict:
    from bids_recon.bids.layout import load_bids_filters
    from bids_recon.errors import BidsReconError

    try:
        return load_bids_filters(Path(text))
    except BidsReconError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file not found: {text}")
    return path


def _label_file_lines(path: Path, flag: str) -> list[str]:
    """The labels of a label file: one per line; blank lines and lines starting with ``#`` skipped."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentError(None, f"argument {flag}: cannot read label file {path} ({exc})") from exc
    labels = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not labels:
        raise argparse.ArgumentError(None, f"argument {flag}: label file {path} lists no label (expected one label "
                                           "per line)")
    for label in labels:
        if any(c.isspace() or c in "/,\\" for c in label):
            raise argparse.ArgumentError(None, f"argument {flag}: label file {path}: '{label}' is not a label "
                                               "(expected one label per line, e.g. 01)")
    return labels


def expand_labels(values: list[str], flag: str) -> list[str]:
    """Labels typed, with each value that names an existing file replaced by the labels it lists (one per line).

    The BIDS-Apps execution specification's rule for ``--<entity>-label``: "a list or a file containing a
    line-delimited list" (``--participant-label 01 02`` or ``--participant-label subjects.txt``). A value with a
    ``/`` or a ``.`` is never a label (BIDS labels are letters and digits), so one that names no file is an error.

    Parameters
    ----------
    values : list of str
        What was typed after the flag.
    flag : str
        The flag, for messages.

    Returns
    -------
    list of str
        The labels in the order given, each once.

    Raises
    ------
    argparse.ArgumentError
        A label file that does not exist, cannot be read, or lists nothing.
    """
    labels: list[str] = []
    for value in values:
        path = Path(value).expanduser()
        if path.is_file():
            labels += _label_file_lines(path, flag)
        elif "/" in value or "." in value:
            raise argparse.ArgumentError(None, f"argument {flag}: '{value}' is neither a label nor a label file (no "
                                               "such file; expected labels such as 01 02, or a file with one label "
                                               "per line)")
        else:
            labels.append(value)
    return list(dict.fromkeys(labels))


class _Paths:
    """argparse types for paths, handed to the generators' option declarations."""

    absolute = staticmethod(_absolute)
    absolute_if_exists = staticmethod(_absolute_if_exists)


_PATHS = _Paths()


class _ToDict(argparse.Action):
    """Collect NAME=VALUE pairs (``nargs='+'`` or repeated) into one dict."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = dict(getattr(namespace, self.dest, None) or {})
        pairs = values if isinstance(values, list) else [values]
        current.update(dict(pairs))
        setattr(namespace, self.dest, current)


class _RoiMasks(argparse.Action):
    """``--roi-mask NAME=PATH`` repeated: one NAME given several times is the union of its files (a list)."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = dict(getattr(namespace, self.dest, None) or {})
        for name, spec in values if isinstance(values, list) else [values]:
            before = current.get(name)
            current[name] = spec if before is None else [*([before] if isinstance(before, str) else before), spec]
        setattr(namespace, self.dest, current)


class _CommaList(argparse.Action):
    """``nargs='+'`` whose items may also be comma lists: ``--metrics alexnet2,clip ssim``."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = values if isinstance(values, list) else [values]
        setattr(namespace, self.dest, [part.strip() for item in items for part in str(item).split(",") if part.strip()])


class _Labels(argparse.Action):
    """``--<entity>-label``: labels, or files listing one label per line (:func:`expand_labels`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            labels = expand_labels(list(values if isinstance(values, list) else [values]), option_string or self.dest)
        except argparse.ArgumentError as exc:
            parser.error(exc.message)
        setattr(namespace, self.dest, labels)


class _OneForm(argparse.Action):
    """One of the two forms of the input, output or analysis level: a positional argument (BIDS-Apps 1.0) or a flag
    (BIDS-Apps execution specification). Both forms for the same thing are a usage error."""

    def __init__(self, *args: Any, what: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.what = what

    def __call__(self, parser, namespace, values, option_string=None):
        forms = namespace.__dict__.setdefault("_forms", {})
        this = option_string or f"the positional argument {str(self.metavar).upper()}"
        if self.what in forms:
            parser.error(f"the {self.what} is given twice, as {forms[self.what]} and as {this}: give it once, either "
                         "as a positional argument (BIDS_DIR OUTPUT_DIR LEVEL) or with --input-dataset, "
                         "--output-location and --analysis-level")
        forms[self.what] = this
        setattr(namespace, self.dest, values)


class _ExecSpec(argparse.Action):
    """``--bids-exec-spec``: print the Boutiques descriptor (BIDS-Apps execution specification) and exit 0.

    ``render`` makes the descriptor's text from the parser (:func:`bids_recon.cli.boutiques.render_descriptor`, given
    by the caller of :func:`build_parser`: the descriptor module reads this parser, so this one does not import it).
    """

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 render: Callable[[argparse.ArgumentParser], str] | None = None, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.render = render

    def __call__(self, parser, namespace, values, option_string=None):
        if self.render is None:
            parser.error("--bids-exec-spec: this parser was built without a descriptor renderer")
        sys.stdout.write(self.render(parser))
        parser.exit(0)


class _Verbosity(argparse.Action):
    """``-v`` -> VERBOSE, ``-vv`` -> DEBUG."""

    def __call__(self, parser, namespace, values, option_string=None):
        count = getattr(namespace, "_verbosity", 0) + 1
        namespace._verbosity = count
        setattr(namespace, self.dest, ("INFO", "VERBOSE", "DEBUG")[min(count, 2)])


class _Plugin(argparse.Action):
    """``--use-plugin FILE.yml`` sets both ``nipype.plugin`` and ``nipype.plugin_args``."""

    def __call__(self, parser, namespace, values, option_string=None):
        import yaml

        try:
            plugin = yaml.safe_load(Path(values).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            parser.error(f"argument {option_string}: cannot read {values} ({exc})")
        if not isinstance(plugin, dict) or "plugin" not in plugin:
            parser.error(f"argument {option_string}: {values} must be YAML with a 'plugin' key (and optional "
                         "'plugin_args')")
        setattr(namespace, "nipype.plugin", str(plugin["plugin"]))
        setattr(namespace, "nipype.plugin_args", dict(plugin.get("plugin_args") or {}))


def _setting(group: argparse._ActionsContainer, *flags: str, key: str, help: str | None = None,
             show_default: bool = True, **kwargs: Any) -> argparse.Action:
    """An option that sets the setting ``key``: dest = key, default "not given", help from its declaration."""
    found = locate(Config, key)
    if found is None or found[0] != "setting":
        raise ValueError(f"{key} is not a setting")
    _, cls, name = found
    action = group.add_argument(*flags, dest=key, default=argparse.SUPPRESS, help=help or doc_of(cls, name),
                                **kwargs)
    action.setting_default = default_of(cls, name) if show_default else None
    action.setting_choices = choices_of(cls, name) if action.nargs != 0 else None
    if action.metavar is None and action.nargs != 0:
        choices = action.setting_choices
        action.metavar = "{" + ",".join(str(c) for c in choices) + "}" if choices else name.upper()
    return action


def build_parser(render_exec_spec: Callable[[argparse.ArgumentParser], str] | None = None) -> argparse.ArgumentParser:
    """Return the ``bids_recon`` argument parser.

    ``render_exec_spec`` prints the descriptor for ``--bids-exec-spec`` (the command line passes
    :func:`bids_recon.cli.boutiques.render_descriptor`).
    """
    parser = _Parser(
        prog="bids_recon",
        usage=("%(prog)s BIDS_DIR OUTPUT_DIR {participant,group} [options]\n"
               "       %(prog)s --input-dataset BIDS_DIR [DERIVATIVES ...] --output-location OUTPUT_DIR "
               "--analysis-level {participant,group} [options]\n"
               "       %(prog)s --bids-exec-spec | --version | --help"),
        description=(
            "Reconstruct the images a participant saw from fMRI (after Takagi & Nishimoto, CVPR 2023): "
            "single-trial betas -> visual ROIs -> stimulus features -> ridge decoders -> reconstruction -> "
            "metrics -> HTML report, written as a BIDS-derivatives dataset. Settings come from the defaults, then "
            "--config-file, then the flags typed here (which always win)."
        ),
        epilog=(
            "Exit codes: 0 success, 1 failure, 16 input not valid BIDS, 17 unknown analysis level, "
            "18 filters selected nothing, 64 usage error, 65 bad data, 66 missing input, 70 internal error (an "
            "invariant between stages broken: a bug, never a result). "
            "Example: bids_recon DS OUT participant -d fmriprep=DS/derivatives/fmriprep"
        ),
        formatter_class=_HelpFormatter,
    )
    ex_cls = type(Config().execution)
    parser.add_argument("execution.bids_dir", metavar="bids_dir", nargs="?", default=argparse.SUPPRESS,
                        action=_OneForm, what="input dataset",
                        help=doc_of(ex_cls, "bids_dir") + " (BIDS-Apps 1.0 form of --input-dataset)")
    parser.add_argument("execution.output_dir", metavar="output_dir", nargs="?", default=argparse.SUPPRESS,
                        action=_OneForm, what="output location",
                        help=doc_of(ex_cls, "output_dir") + " (BIDS-Apps 1.0 form of --output-location)")
    parser.add_argument("execution.analysis_level", metavar="analysis_level", nargs="?", default=argparse.SUPPRESS,
                        action=_OneForm, what="analysis level",
                        help=doc_of(ex_cls, "analysis_level") + " (BIDS-Apps 1.0 form of --analysis-level)")
    parser.add_argument("--version", action="version", version=f"bids_recon {__version__}")
    parser.add_argument("--bids-exec-spec", action=_ExecSpec, render=render_exec_spec,
                        help="print this program's Boutiques descriptor (BIDS-Apps execution specification) and exit")

    spec = parser.add_argument_group(
        "Input, output and analysis level (BIDS-Apps execution specification)",
        "Each may instead be given as the positional arguments BIDS_DIR OUTPUT_DIR LEVEL (BIDS-Apps 1.0), never both "
        "ways; options that take several values (--input-dataset, --participant-label) take every value up to the "
        "next option.")
    spec.add_argument("--input-dataset", dest=INPUT_DATASET_DEST, nargs="+", type=_absolute, action=_OneForm,
                      what="input dataset", default=argparse.SUPPRESS, metavar="PATH",
                      help="the datasets to process, in this order: first the raw BIDS dataset (as BIDS_DIR), then "
                           "any BIDS-derivatives datasets, each named by the first GeneratedBy Name of its "
                           "dataset_description.json in lower case, letters and digits only (fMRIPrep -> fmriprep): "
                           "--input-dataset DS DS/derivatives/fmriprep is BIDS_DIR DS with -d fmriprep=DS/derivatives/"
                           "fmriprep. The order is kept; a name given twice (here or with -d) is a usage error")
    _setting(spec, "--output-location", key="execution.output_dir", type=_absolute, action=_OneForm,
             what="output location", metavar="PATH")
    level = _setting(spec, "--analysis-level", key="execution.analysis_level", action=_OneForm, what="analysis level",
                     show_default=False, help=doc_of(ex_cls, "analysis_level") + "; the execution specification's "
                     "names are accepted too: " + ", ".join(f"'{k}' = '{v}'" for k, v in LEVEL_ALIASES.items()))
    level.setting_choices = [*ANALYSIS_LEVELS, *LEVEL_ALIASES]
    level.metavar = "{" + ",".join(level.setting_choices) + "}"

    sel = parser.add_argument_group("Selecting data")
    _setting(sel, "--dataset", key="execution.dataset", metavar="{" + ",".join(_presets()) + "}")
    labels = " (or a file listing one label per line: --participant-label subjects.txt)"
    _setting(sel, "--participant-label", "--participant_label", key="execution.participant_label", nargs="+",
             action=_Labels, metavar="LABEL|FILE", help=doc_of(ex_cls, "participant_label") + labels)
    _setting(sel, "--session-label", key="execution.session_label", nargs="+", action=_Labels, metavar="LABEL|FILE",
             help=doc_of(ex_cls, "session_label") + labels)
    _setting(sel, "-t", "--task-id", key="execution.task_id", nargs="+", action=_Labels, metavar="TASK|FILE",
             help=doc_of(ex_cls, "task_id") + labels)
    _setting(sel, "--bids-filter-file", key="execution.bids_filters", type=_json_filters, metavar="FILE",
             help='JSON with extra entity filters for the BOLD query, as fMRIPrep: {"bold": {"run": [1, 2]}}')
    _setting(sel, "-d", "--derivatives", key="execution.derivatives", nargs="+", type=_key_path, action=_ToDict,
             metavar="NAME=PATH")
    _setting(sel, "--space", key="workflow.space")
    _setting(sel, "--res", key="workflow.resolution", type=_resolution)

    method = parser.add_argument_group("Method")
    _setting(method, "--betas-only", key="workflow.betas_only", action="store_const", const=True)
    _setting(method, "--glm", key="workflow.glm.estimator")
    _setting(method, "--confounds", key="workflow.glm.confounds", nargs="+", action=_CommaList, metavar="SPEC")
    _setting(method, "--betas", key="workflow.glm.betas", type=_betas, metavar="FORMAT=PATH[:KEY=VALUE,...]")
    _setting(method, "--roi-mask", key="workflow.rois.user_masks", action=_RoiMasks, type=_roi_mask,
             metavar="NAME=PATH[:LABELS]",
             help="use a label volume for ROI NAME instead of the atlas (needed where the data are not in the atlas's "
                  "space, e.g. T1w): LABELS = numbers or colour-table names (1,2 or early,ventral), or >0 (the "
                  "default); voxels == k or > 0, never != 0; {subject} in PATH is the participant; resampled "
                  "(nearest) to the BOLD grid. Repeat the flag for several ROIs; one NAME given several times is the "
                  "union of its files (left and right hemisphere masks), e.g. --roi-mask earlyvisual=lh_V1.nii.gz "
                  "--roi-mask earlyvisual=rh_V1.nii.gz. A NAME typed here replaces that ROI of --config-file and of "
                  "the --dataset preset (in a config file: earlyvisual = [\"lh.nii.gz\", \"rh.nii.gz\"])")
    _setting(method, "--voxel-selection", key="workflow.rois.voxel_selection", metavar="ncsnr>T|top:K")
    _setting(method, "--stimuli", key="workflow.stimuli.resolver", metavar="KIND[:KEY=VALUE,...]")
    _setting(method, "--stimulus-column", key="workflow.stimuli.column")
    _setting(method, "--stimuli-dir", key="workflow.stimuli.dirs", nargs="+", type=_absolute, metavar="DIR")
    _setting(method, "--test-min-repeats", key="workflow.stimuli.test_min_repeats", type=int)
    _setting(method, "--test-split", key="workflow.stimuli.test_split", metavar="RULE")
    _setting(method, "--decoders-from", key="workflow.decoding.decoders_from", type=_absolute, metavar="DIR")
    cards = generator_cards()
    _setting(method, "--generator", key="workflow.generate.generator")

    for card in cards.values():  # each generator's card declares the flags of its own settings
        group = parser.add_argument_group(card.options_title or f"Generator {card.name} (--generator {card.name})")

        def option(*flags: str, key: str, _group=group, _name=card.name, **kwargs: Any) -> argparse.Action:
            dotted = key if key.startswith(("workflow.", "execution.", "nipype.")) else \
                f"workflow.generate.{_name}.{key}"
            return _setting(_group, *flags, key=dotted, **kwargs)

        card.add_options(option, _PATHS)

    evaluation = parser.add_argument_group("Evaluation")
    _setting(evaluation, "--metrics", key="workflow.evaluate.metrics", nargs="+", action=_CommaList, metavar="ID",
             help="the field's metrics to compute, space or comma separated; a metric whose network weights are "
                  "not on disk is reported as not computed (see bids_recon-fetch)")
    _setting(evaluation, "--sample-selection", key="workflow.evaluate.selection")
    _setting(evaluation, "--metrics-batch-size", key="workflow.evaluate.batch_size", type=int, metavar="N")

    enc = parser.add_argument_group("Encoding models (which voxels each feature space predicts)")
    _setting(enc, "--encoding", key="workflow.encoding.enabled")
    _setting(enc, "--encoding-features", key="workflow.encoding.features", nargs="+", metavar="SPACE")
    _setting(enc, "--encoding-partition", key="workflow.encoding.partition", nargs="+", metavar="SPACE")
    _setting(enc, "--encoding-mask", key="workflow.encoding.mask")
    _setting(enc, "--encoding-null", key="workflow.encoding.null")
    _setting(enc, "--encoding-permutations", key="workflow.encoding.n_permutations", type=int, metavar="N")
    _setting(enc, "--encoding-fdr", key="workflow.encoding.fdr", type=float, metavar="Q")
    _setting(enc, "--zc-noise-levels", key="workflow.encoding.zc_noise_levels", nargs="+", type=float,
             metavar="LEVEL")

    shared = parser.add_argument_group("Decoders shared across participants (group level)")
    _setting(shared, "--shared-space", key="workflow.shared.method")
    _setting(shared, "--shared-components", key="workflow.shared.n_components", type=int, metavar="K")
    _setting(shared, "--shared-train-sessions", key="workflow.shared.train_sessions", type=int, metavar="N")
    _setting(shared, "--shared-align-test", key="workflow.shared.align_test_fraction", type=float, metavar="FRACTION")

    perf = parser.add_argument_group("Performance")
    _setting(perf, "--nprocs", "--nthreads", key="nipype.nprocs", type=int, metavar="N", show_default=False)
    _setting(perf, "--omp-nthreads", key="nipype.omp_nthreads", type=int, metavar="N")
    _setting(perf, "--mem", "--mem-gb", key="nipype.mem_gb", type=float, metavar="GB")
    _setting(perf, "--use-plugin", key="nipype.plugin", action=_Plugin, metavar="FILE.yml", show_default=False,
             help="nipype plugin configuration (YAML with 'plugin' and 'plugin_args')")
    _setting(perf, "--device", key="execution.device")

    other = parser.add_argument_group("Other options")
    _setting(other, "-w", "--work-dir", key="execution.work_dir", type=_absolute)
    _setting(other, "--random-seed", key="execution.random_seed", type=int)
    _setting(other, "--allow-download", key="execution.allow_download", action="store_const", const=True)
    other.add_argument("--config-file", dest=CONFIG_FILE_DEST, type=_existing_file, default=None,
                       metavar="FILE.toml",
                       help="settings in the TOML format that every run saves in OUTPUT_DIR/logs; flags typed here "
                            "win")
    _setting(other, "--skip-bids-validation", key="execution.skip_bids_validation", action="store_const",
             const=True)
    _setting(other, "--stop-on-first-crash", key="execution.stop_on_first_crash", action="store_const", const=True)
    _setting(other, "--reports-only", key="execution.reports_only", action="store_const", const=True)
    _setting(other, "--check-only", key="execution.check_only", action="store_const", const=True)
    _setting(other, "-v", "--verbose", key="execution.log_level", action=_Verbosity, nargs=0,
             help="more log output (-vv: debug)")
    return parser


def derivatives_name(path: Path) -> str:
    """The ``-d NAME`` of a derivatives dataset given with ``--input-dataset``: the first ``GeneratedBy`` ``Name`` of
    its ``dataset_description.json`` (``PipelineDescription`` before BIDS 1.4), lower case, letters and digits only
    (``fMRIPrep`` -> ``fmriprep``).

    Raises
    ------
    MissingInputError
        The folder does not exist (exit 66).
    UsageError
        No ``dataset_description.json``, not JSON, or no pipeline name in it (exit 64): give it with ``-d NAME=PATH``.
    """
    from bids_recon.errors import MissingInputError, UsageError

    path = Path(path)
    if not path.is_dir():
        raise MissingInputError("--input-dataset: derivatives dataset folder does not exist", path)
    advice = "; give it with -d NAME=PATH instead (e.g. -d fmriprep=PATH)"
    description = path / "dataset_description.json"
    try:
        data = json.loads(description.read_text())
    except OSError:
        raise UsageError("--input-dataset: cannot tell which derivatives this is: no dataset_description.json"
                         + advice, path) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--input-dataset: dataset_description.json is not valid JSON ({exc})" + advice,
                         path) from exc
    generated = data.get("GeneratedBy") if isinstance(data, dict) else None
    pipelines = generated if isinstance(generated, list) else []
    legacy = data.get("PipelineDescription") if isinstance(data, dict) else None
    entries = [*pipelines, *([legacy] if isinstance(legacy, dict) else [])]
    names = [g.get("Name") for g in entries if isinstance(g, dict)]
    name = re.sub(r"[^a-z0-9]", "", str(next((n for n in names if n), "")).lower())
    if not name:
        raise UsageError("--input-dataset: cannot tell which derivatives this is: its dataset_description.json names "
                         "no pipeline (GeneratedBy[0].Name)" + advice, path)
    return name


def _dataset_type(path: Path) -> str | None:
    try:
        data = json.loads((Path(path) / "dataset_description.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data.get("DatasetType") if isinstance(data, dict) else None


def resolve_bids_app_forms(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turn either form of the input, output and analysis level into the settings ``execution.bids_dir``,
    ``execution.output_dir``, ``execution.analysis_level`` and ``execution.derivatives`` (in place).

    The forms are the positional ``BIDS_DIR OUTPUT_DIR LEVEL`` (BIDS-Apps 1.0) and the flags ``--input-dataset RAW
    [DERIV ...] --output-location OUT --analysis-level LEVEL`` (BIDS-Apps execution specification 0.1.0). Each
    derivatives dataset after the first is added to ``-d`` under :func:`derivatives_name`. The execution
    specification's level names (``subject``, ``dataset``) become ours (:data:`LEVEL_ALIASES`); an unknown level is
    left for the exit code 17.

    Raises
    ------
    SystemExit
        64 (usage) when one of the three is missing, given both ways, or a derivatives name is given twice.
    MissingInputError, UsageError
        A derivatives dataset of ``--input-dataset`` that does not exist (66) or cannot be named (64).
    """
    attrs = vars(args)
    forms = attrs.pop("_forms", {})
    missing = [what for what in ("input dataset", "output location", "analysis level") if what not in forms]
    if missing:
        parser.error(f"the {' and the '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing: give BIDS_DIR "
                     "OUTPUT_DIR LEVEL (BIDS-Apps 1.0), or --input-dataset PATH --output-location PATH "
                     "--analysis-level LEVEL (BIDS-Apps execution specification)")
    datasets = attrs.pop(INPUT_DATASET_DEST, None)
    if datasets is not None:
        attrs["execution.bids_dir"] = datasets[0]
        if _dataset_type(Path(datasets[0])) == "derivative":
            from bids_recon.errors import UsageError

            raise UsageError("--input-dataset: the first dataset must be the raw BIDS dataset, then the derivatives; "
                             "this one is a derivatives dataset (DatasetType 'derivative')", datasets[0])
        derivatives = dict(attrs.get("execution.derivatives") or {})
        for path in datasets[1:]:
            name = derivatives_name(Path(path))
            if name in derivatives:
                parser.error(f"argument --input-dataset: derivatives '{name}' given twice ({derivatives[name]} and "
                             f"{path}): give each pipeline's derivatives once")
            derivatives[name] = path
        if derivatives:
            attrs["execution.derivatives"] = derivatives
    for key in ("execution.bids_dir", "execution.output_dir"):
        attrs[key] = _absolute(attrs[key])
    level = attrs["execution.analysis_level"]
    attrs["execution.analysis_level"] = LEVEL_ALIASES.get(level, level)


def typed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings typed on the command line: dotted key -> value (nothing for options not typed)."""
    return {k: v for k, v in vars(args).items() if "." in k}


def flags_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Dotted key -> the option that sets it (for messages: "from the command line (--glm)")."""
    out: dict[str, str] = {}
    for action in parser._actions:
        if "." in str(action.dest) and action.dest not in out:
            longs = [o for o in action.option_strings if o.startswith("--")]
            out[action.dest] = (longs or action.option_strings or [str(action.metavar)])[0]
    out["nipype.plugin_args"] = out.get("nipype.plugin", "--use-plugin")
    return out


__all__ = ["ANALYSIS_LEVELS", "LEVEL_ALIASES", "build_parser", "derivatives_name", "expand_labels", "flags_of",
           "resolve_bids_app_forms", "typed_settings"]
