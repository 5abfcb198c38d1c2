"""Captions of the stimuli: a TSV, COCO caption files joined by COCO id, or a category name as a last resort.

``[workflow.stimuli] captions`` names the source: a TSV (``stim_file``, ``caption``; several rows per image), a
COCO ``captions_{train,val}{2014,2017}.json`` or a folder of them (NSD's stim info gives each image's ``cocoId``;
BOLD5000 and NOD name COCO images by id). With ``category_captions``, a stimulus without a caption gets
``a photo of a <category>`` from its resolver (THINGS concept folder, ImageNet synset words); otherwise it is an
error naming the stimuli and, for COCO, their ids.
"""

from __future__ import annotations

import json
from pathlib import Path

from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.features.params import StimulusParams
from bids_recon.features.resolvers.base import StimulusResolver
from bids_recon.io import read_tsv


def captions_path(bids_dir: Path | str, params: StimulusParams | None = None) -> Path:
    """The captions source of the settings: absolute as given, else relative to the raw dataset."""
    path = Path((params or StimulusParams()).captions).expanduser()
    return path if path.is_absolute() else Path(bids_dir) / path


def load_captions(path: Path, stim_ids: list[str] | None = None) -> dict[str, list[str]]:
    """Read a captions table (``stim_file``, ``caption``; several rows per stimulus allowed).

    Returns
    -------
    dict
        Stimulus id -> its captions. When ``stim_ids`` is given, every one must have a caption.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("captions table does not exist", path)
    table = read_tsv(path)
    for column in ("stim_file", "caption"):
        if column not in table:
            raise BadDataError(f"captions table lacks the '{column}' column", path)
    captions: dict[str, list[str]] = {}
    for stim, caption in zip(table["stim_file"].astype(str), table["caption"].astype(str), strict=True):
        captions.setdefault(stim, []).append(caption)
    if stim_ids is not None:
        missing = [s for s in stim_ids if s not in captions]
        if missing:
            raise BadDataError(f"{len(missing)} stimuli have no caption (first: {missing[0]})", path)
    return captions


def coco_caption_files(path: Path) -> list[Path]:
    """COCO caption JSON files: ``path`` itself, or the ``captions_*.json`` in the folder ``path``."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("captions_*.json"))
        if not files:
            raise MissingInputError("no COCO captions_*.json in the captions folder", path)
        return files
    if not path.is_file():
        raise MissingInputError("captions file does not exist", path)
    return [path]


def load_coco_captions(files: list[Path]) -> dict[int, list[str]]:
    """COCO image id -> its captions, from COCO caption files (``annotations``: ``image_id``, ``caption``)."""
    by_id: dict[int, list[str]] = {}
    for path in files:
        try:
            data = json.loads(Path(path).read_text())
            annotations = data["annotations"]
            for annotation in annotations:
                by_id.setdefault(int(annotation["image_id"]), []).append(str(annotation["caption"]).strip())
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BadDataError(f"not a COCO captions file (annotations with image_id and caption): {exc}",
                               path) from exc
    return by_id


def _is_coco(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() == ".json"


def stimulus_captions(resolver: StimulusResolver, stim_ids: list[str], source: Path | None = None
                      ) -> tuple[dict[str, list[str]], list[str]]:
    """Captions of ``stim_ids`` from the settings' source, and the stimuli that have none.

    Parameters
    ----------
    resolver : StimulusResolver
        Its settings name the source (``captions``, ``category_captions``); it gives COCO ids and categories.
    stim_ids : list of str
    source : Path, optional
        The captions file or folder (default: :func:`captions_path` of the resolver's settings).

    Returns
    -------
    captions : dict
        Stimulus id -> captions (only the stimuli that have some).
    missing : list of str
        Stimuli without a caption, each with why (``'2951' (COCO id 532481)``).

    Raises
    ------
    MissingInputError, BadDataError
        The source does not exist or cannot be read.
    """
    params = resolver.params
    source = Path(source) if source is not None else captions_path(resolver.bids_dir, params)
    found: dict[str, list[str]] = {}
    missing: list[str] = []
    if _is_coco(source):
        by_id = load_coco_captions(coco_caption_files(source))
        for stim in stim_ids:
            coco = resolver.coco_id(stim)
            if coco is not None and by_id.get(coco):
                found[stim] = by_id[coco]
            else:
                missing.append(f"'{stim}'" + (f" (COCO id {coco})" if coco is not None else " (not a COCO image)"))
    else:
        table = load_captions(source) if source.is_file() or not params.category_captions else {}
        for stim in stim_ids:
            if table.get(stim):
                found[stim] = table[stim]
            else:
                missing.append(f"'{stim}'")
    if params.category_captions and missing:
        still = []
        for stim, text in zip([s for s in stim_ids if s not in found], missing, strict=True):
            category = resolver.category(stim)
            if category:
                found[stim] = [f"a photo of a {category}"]
            else:
                still.append(text + " (no category)")
        missing = still
    return found, missing


def captions_for(resolver: StimulusResolver, stim_ids: list[str], source: Path | None = None
                 ) -> dict[str, list[str]]:
    """Captions of every stimulus in ``stim_ids`` (BadDataError naming the first uncaptioned ones)."""
    found, missing = stimulus_captions(resolver, stim_ids, source)
    if missing:
        source = Path(source) if source is not None else captions_path(resolver.bids_dir, resolver.params)
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise BadDataError(f"{len(missing)} of {len(stim_ids)} stimuli have no caption ({shown})", source)
    return found
