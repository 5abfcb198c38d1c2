"""Settings of how trials name their stimuli, where the images and captions are, and how the test set is chosen
(``[workflow.stimuli]``).

The settings also answer the experiment's design (:mod:`bids_recon.design`) which events rows are trials
(:class:`bids_recon.design.table.TrialRows`), by asking the stimulus resolver they name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bids_recon.design.repeats import TEST_MIN_REPEATS
from bids_recon.design.split import parse_test_split
from bids_recon.params import problem_of, setting

if TYPE_CHECKING:
    import pandas as pd


def _check_test_split(spec: str) -> str | None:
    return problem_of(parse_test_split, spec)


def _check_resolver(spec: str) -> str | None:
    from bids_recon.features.resolvers.registry import parse_resolver

    return problem_of(parse_resolver, spec)


@dataclass
class StimulusParams:
    """Where each trial's image is named and found, its captions, and the train/test split."""

    resolver: str = setting("files", check=_check_resolver, doc=(
        "KIND[:KEY=VALUE,...]: how an events row names its image. files = a path column resolved in the stimuli "
        "folders (any image format; nested folders found by bare file name); nsd = 73k_id (1-based) or nsdId "
        "(0-based) into nsd_stimuli.hdf5 (options hdf5=, info=, expdesign=; NSD's download layout is found "
        "beside the raw dataset); imagenet = stimulus_name or the float stimulus_id of the Kamitani-lab tables, "
        "rest and one-back repeat rows dropped. Relative option paths are relative to the raw dataset"))
    column: str = setting("", doc=(
        "events.tsv column naming each trial's image (empty: the resolver's own: files stim_file, file_path, "
        "condition or ImgName, the first present; nsd 73k_id or nsdId; imagenet stimulus_name or stimulus_id)"))
    folder: str = setting("stimuli", doc="folder of the images, relative to the raw dataset")
    dirs: list[str] = setting(factory=list, doc=(
        "more folders of images, searched after the dataset's own folder (images distributed outside the BIDS "
        "tree: THINGS, ImageNet, COCO); relative to the raw dataset unless absolute"))
    captions: str = setting("stimuli/captions.tsv", doc=(
        "captions: a TSV (stim_file, caption; several rows per image allowed), a COCO captions JSON "
        "(captions_train2017.json...) or a folder of them (joined by COCO id: NSD's cocoId, or the id in file "
        "names such as COCO_train2014_000000420713.jpg); relative to the raw dataset unless absolute"))
    category_captions: bool = setting(False, doc=(
        "stimuli without a caption get 'a photo of a <category>' (THINGS concept folder, ImageNet synset words "
        "from synset_words) instead of stopping the run"))
    synset_words: str = setting("", doc=(
        "ImageNet synset words file ('n01440764 tench, Tinca tinca' per line) naming the categories of ImageNet "
        "stimuli, for category_captions; relative to the raw dataset unless absolute"))
    test_min_repeats: int = setting(TEST_MIN_REPEATS, ge=2, doc=(
        "stimuli shown at least this many times form the test set (unless test_split names it)"))
    test_split: str = setting("", check=_check_test_split, doc=(
        "how the test set is named: COLUMN=VALUE[,VALUE] (trials whose events COLUMN has one of the values, e.g. "
        "trial_type=test for THINGS-fMRI); ses-LABEL[,ses-LABEL] (whole sessions, * allowed: "
        "ses-perceptionTest* for GOD); shared1000 (NSD's shared images, from the stim info or nsd_expdesign.mat); "
        "repeats or empty: stimuli shown >= test_min_repeats times (BOLD5000, NOD). A stimulus must be in one set "
        "only"))

    #: fields that decide which events rows are modelled as trials (what the GLM sees); the others (where images
    #: and captions are, the split) change nothing in the betas.
    ROW_FIELDS = ("resolver", "column")

    def rows_only(self) -> StimulusParams:
        """A copy with only :attr:`ROW_FIELDS` set (the rest at defaults): what a GLM node is given, so that
        changing the split, the image folders or the captions never re-estimates the betas."""
        defaults = StimulusParams()
        kept = {f.name: getattr(self, f.name) for f in fields(self) if f.name in self.ROW_FIELDS}
        return replace(defaults, **kept)

    def trial_rows(self, events: pd.DataFrame, source: Path | None = None) -> pd.DataFrame:
        """The events rows that are trials, their stimulus ids and whether each is decoded: the decision of the
        resolver these settings name (:meth:`bids_recon.features.resolvers.StimulusResolver.trial_rows`; no file is
        read).

        Returns
        -------
        pandas.DataFrame
            Columns :data:`bids_recon.design.table.ROW_COLUMNS`, one row per trial in the events' order.
        """
        from bids_recon.features.resolvers.registry import RESOLVERS, parse_resolver

        kind, options = parse_resolver(self.resolver)
        return RESOLVERS[kind].trial_rows(events, self.column, options, source)

    def stimulus_columns(self) -> tuple[str, ...]:
        """The events columns the resolver names stimuli by, tried in order when :attr:`column` is empty."""
        from bids_recon.features.resolvers.registry import RESOLVERS, parse_resolver

        return tuple(RESOLVERS[parse_resolver(self.resolver)[0]].columns)


def stimulus_params(stimuli: StimulusParams | str | None = None) -> StimulusParams:
    """Settings from a StimulusParams, from a bare column name (the ``files`` resolver's), or the defaults."""
    if stimuli is None:
        return StimulusParams()
    if isinstance(stimuli, str):
        return StimulusParams(column=stimuli)
    return stimuli
