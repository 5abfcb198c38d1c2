"""Interfaces that write the derivatives dataset (the ``ds_*`` nodes) and the participant report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits
from PIL import Image

from bids_recon.interfaces.base import RecordingInterface
from bids_recon.io import atomic_write, read_tsv, write_json, write_tsv


class _SinkInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    output_dir = traits.Str(mandatory=True, desc="root of the derivatives dataset")
    kind = traits.Str(mandatory=True, desc="output kind (bids_recon.bids.derivatives.OUTPUTS)")
    entities = traits.Dict(traits.Str, traits.Str, mandatory=True, desc="BIDS entities of the output")
    extension = traits.Str(mandatory=True, desc="file extension, e.g. .nii.gz")
    sidecar = traits.Dict(desc="JSON sidecar written beside the file (empty: none)")
    extra_files = traits.Dict(traits.Str, File(exists=True), desc="extension -> file copied beside it")


class _SinkOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class DerivativesSink(RecordingInterface):
    """Copy one file to the derivatives path of its entities atomically, with its JSON sidecar.

    The path comes from :func:`bids_recon.naming.output_path` (kind + entities + extension); files in
    ``extra_files`` go beside it under the same name with their own extension. The sidecar's ``Sources`` become BIDS
    URIs (:func:`sidecar_sources`).
    """

    writes_outputs = True

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec

    def _run(self, runtime):
        from bids_recon.naming import output_path, sidecar_path, split_extension

        i = self.inputs
        out = Path(i.output_dir) / output_path(i.kind, dict(i.entities), i.extension)
        atomic_write(out, lambda tmp: shutil.copyfile(i.in_file, tmp))
        stem = out.parent / split_extension(out.name)[0]
        extra = dict(i.extra_files or {})
        sidecar = dict(i.sidecar or {})
        if ".json" in extra and sidecar:  # merge a sidecar the node wrote with the workflow's provenance
            sidecar = {**json.loads(Path(extra.pop(".json")).read_text()), **sidecar}
        for ext, src in extra.items():
            atomic_write(Path(f"{stem}{ext}"), lambda tmp, src=src: shutil.copyfile(src, tmp))
        if sidecar:
            write_json(sidecar_path(out), sidecar_sources(sidecar, Path(i.output_dir)))
        self._results["out_file"] = str(out)


def sidecar_sources(sidecar: dict, output_dir: Path) -> dict:
    """``sidecar`` with its ``Sources`` (and each ROI file's ``Source``) as BIDS URIs: paths and ``file://`` URIs of
    files in this dataset become ``bids::...``, those in a dataset of ``DatasetLinks`` ``bids:<name>:...``; BIDS URIs
    stay, and a file outside every linked dataset stays a ``file://`` URI.

    Parameters
    ----------
    sidecar : dict
        The JSON sidecar to write.
    output_dir : Path
        Root of the derivatives dataset, whose ``dataset_description.json`` links the other datasets.
    """
    from bids_recon.bids.derivatives import linked_folders
    from bids_recon.naming import to_bids_uri

    if "Sources" not in sidecar and "Files" not in sidecar:
        return sidecar
    links = linked_folders(output_dir)
    out = dict(sidecar)
    if isinstance(out.get("Sources"), list):
        out["Sources"] = [to_bids_uri(s, links, output_dir) for s in out["Sources"]]
    if isinstance(out.get("Files"), list):
        out["Files"] = [{**f, "Source": to_bids_uri(f["Source"], links, output_dir)}
                        if isinstance(f, dict) and "Source" in f else f for f in out["Files"]]
    return out


class _WriteReconstructionsInputSpec(BaseInterfaceInputSpec):
    reconstructions = File(exists=True, mandatory=True, desc=(
        "the generated images: .npz of stim_ids, n_trials and images (one per stimulus), or .tsv index of image files "
        "(stimulus, trials, variant, sample, seed, file; one row per image)"))
    per_item = File(exists=True, mandatory=True, desc="per-image metrics (columns stimulus, variant, sample)")
    output_dir = traits.Str(mandatory=True)
    names = traits.Dict(mandatory=True, desc="SubjectOutputs fields (subject, task, space, resolution)")
    generator = traits.Str(mandatory=True, desc="desc- of the index; its card names the images (image_desc)")
    sidecar = traits.Dict()


class _WriteReconstructionsOutputSpec(TraitedSpec):
    index_file = File(exists=True)


def _generated(path: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The images a generator node made, one row each (``stimulus``, ``trials``, and ``variant``, ``sample``,
    ``seed``, ``file`` for an index of files), and the ``(n, H, W, 3)`` images of an ``.npz`` (None for files)."""
    if Path(path).suffix == ".npz":
        with np.load(path) as data:
            index = pd.DataFrame({"stimulus": data["stim_ids"].astype(str), "trials": data["n_trials"].astype(int)})
            return index, data["images"]
    return read_tsv(path, dtype={"stimulus": str, "variant": str}), None


class WriteReconstructions(RecordingInterface):
    """Write the reconstructed images as PNG under their derivative names, with a TSV index (one row per image:
    stimulus, trials, file and the image's metrics) and its sidecar.

    Whether a generator makes variants and samples is in its data, not in the interface: an ``.npz`` holds one image
    per stimulus; an index of the files a generator node wrote has a row per (stimulus, variant, sample), and the
    metrics join on all three. The generator's card names each image (``image_desc``).
    """

    writes_outputs = True

    input_spec = _WriteReconstructionsInputSpec
    output_spec = _WriteReconstructionsOutputSpec

    def _run(self, runtime):
        from bids_recon.generate.card import generator_card
        from bids_recon.naming import SubjectOutputs, sidecar_path

        i = self.inputs
        names, card = SubjectOutputs(**i.names), generator_card(i.generator)
        root = Path(i.output_dir)
        index, images = _generated(i.reconstructions)
        keys = ["stimulus", *(key for key in ("variant", "sample") if key in index)]
        files = []
        for k, row in enumerate(index.itertuples()):
            desc = card.image_desc(row.variant, int(row.sample)) if "variant" in index else card.image_desc()
            rel = names.recon_image(row.stimulus, desc)
            if images is None:
                atomic_write(root / rel, lambda tmp, src=row.file: shutil.copyfile(src, tmp))
            else:
                pixels = (np.clip(images[k], 0, 1) * 255).round().astype(np.uint8)
                atomic_write(root / rel, lambda tmp, pixels=pixels: Image.fromarray(pixels).save(tmp, format="PNG"))
            files.append(rel.as_posix())
        index["file"] = files
        metrics = read_tsv(i.per_item, dtype={"stimulus": str, "variant": str})
        out = root / names.recon_index(i.generator)
        write_tsv(out, index.merge(metrics, on=keys, how="left"))
        if i.sidecar:
            write_json(sidecar_path(out), sidecar_sources(dict(i.sidecar), root))
        self._results["index_file"] = str(out)


class _ReportInputSpec(BaseInterfaceInputSpec):
    output_dir = traits.Str(mandatory=True)
    names = traits.Dict(mandatory=True, desc="SubjectOutputs fields (subject, task, space, resolution)")
    bids_dir = traits.Str(mandatory=True)
    stimuli = traits.Dict(desc="StimulusParams fields (where the seen images are)")
    first_run = traits.Tuple(traits.Either(None, traits.Str), traits.Either(None, traits.Str),
                             traits.Either(None, traits.Str), mandatory=True, desc="(session, run, task) of the "
                             "first run, whose design matrix is shown")
    boldref = traits.Either(None, File(exists=True), default=None, usedefault=True)
    rois = traits.Dict(traits.Str, traits.Either(None, traits.Str), mandatory=True)
    decoders = traits.List(traits.Tuple(traits.Str, traits.Str), mandatory=True)
    generator = traits.Str(mandatory=True, desc="the generator whose outputs are shown; empty for --betas-only")
    summary = traits.Dict(desc="facts shown at the top of the report")
    methods = traits.Str("", usedefault=True)
    zscored = traits.Bool(True, usedefault=True, desc="betas z-scored per session (workflow.glm)")
    decoders_from = traits.Str("", usedefault=True, desc="--decoders-from: the run whose decoders were applied")
    waits_for = traits.List(desc="outputs that must be written before the report (ordering only)")


class _ReportOutputSpec(TraitedSpec):
    out_report = File(exists=True)


class ParticipantReport(RecordingInterface):
    """Build ``sub-<label>.html`` and its figures from the written outputs."""

    writes_outputs = True

    input_spec = _ReportInputSpec
    output_spec = _ReportOutputSpec

    def _run(self, runtime):
        from bids_recon.naming import SubjectOutputs
        from bids_recon.reports.participant import build_participant_report

        i = self.inputs
        out = build_participant_report(
            output_dir=Path(i.output_dir), names=SubjectOutputs(**i.names),
            bids_dir=Path(i.bids_dir), stimuli=dict(i.stimuli), first_run=tuple(i.first_run),
            boldref=Path(i.boldref) if i.boldref else None, rois=dict(i.rois), decoders=list(i.decoders),
            generator=i.generator, summary=dict(i.summary), methods=i.methods, zscored=i.zscored,
            decoders_from=Path(i.decoders_from) if i.decoders_from else None,
        )
        self._results["out_report"] = str(out)
