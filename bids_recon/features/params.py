"""Settings of how trials name their stimuli and how the test set is chosen (``[workflow.stimuli]``)."""

from __future__ import annotations

from dataclasses import dataclass

from bids_recon.params import setting


def _check_test_split(spec: str) -> str | None:
    from bids_recon.errors import UsageError
    from bids_recon.glm.trials import parse_test_split

    try:
        parse_test_split(spec)
    except UsageError as exc:
        return str(exc)
    return None


@dataclass
class StimulusParams:
    """Where each trial's image is named and found, its captions, and the train/test split."""

    column: str = setting("stim_file", doc="events.tsv column naming each trial's image (relative to the folder)")
    folder: str = setting("stimuli", doc="folder of the images, relative to the raw dataset")
    captions: str = setting("stimuli/captions.tsv", doc=(
        "captions table (TSV: stim_file, caption; several rows per image allowed), relative to the raw dataset "
        "unless absolute"))
    test_min_repeats: int = setting(2, ge=2, doc=(
        "stimuli shown at least this many times form the test set (unless test_split names it)"))
    test_split: str = setting("", check=_check_test_split, doc=(
        "COLUMN=VALUE[,VALUE]: trials whose events COLUMN has one of the values are test trials, the others "
        "training trials (e.g. trial_type=test for THINGS-fMRI, shared1000=True for NSD); a stimulus must be in one "
        "set only; empty: split by repeats"))
