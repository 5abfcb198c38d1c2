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
    out_file = traits.Str(mandatory=True, desc="absolute destination path (named by bids/derivatives.py)")
    sidecar = traits.Dict(desc="JSON sidecar written beside the file (empty: none)")
    extra_files = traits.Dict(traits.Str, File(exists=True), desc="extension -> file copied beside it")


class _SinkOutputSpec(TraitedSpec):
    out_file = File(exists=True)


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii", ".npz", ".npy", ".tsv", ".png", ".svg", ".json"):
        if name.endswith(ext):
            return str(path.parent / name[: -len(ext)])
    return str(path.with_suffix(""))


class DerivativesSink(RecordingInterface):
    """Copy one file to its derivatives name atomically, with its JSON sidecar."""

    writes_outputs = True

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec

    def _run(self, runtime):
        out = Path(self.inputs.out_file)
        atomic_write(out, lambda tmp: shutil.copyfile(self.inputs.in_file, tmp))
        stem = _stem(out)
        extra = dict(self.inputs.extra_files or {})
        sidecar = dict(self.inputs.sidecar or {})
        if ".json" in extra and sidecar:  # merge a sidecar the node wrote with the workflow's provenance
            sidecar = {**json.loads(Path(extra.pop(".json")).read_text()), **sidecar}
        for ext, src in extra.items():
            atomic_write(Path(stem + ext), lambda tmp, src=src: shutil.copyfile(src, tmp))
        if sidecar:
            write_json(Path(stem + ".json"), sidecar)
        self._results["out_file"] = str(out)


class _WriteReconstructionsInputSpec(BaseInterfaceInputSpec):
    reconstructions = File(exists=True, mandatory=True)
    per_item = File(exists=True, mandatory=True, desc="per-stimulus metrics (column 'stimulus')")
    image_files = traits.Dict(traits.Str, traits.Str, mandatory=True, desc="stimulus id -> absolute PNG path")
    index_file = traits.Str(mandatory=True, desc="absolute path of the TSV index")
    output_dir = traits.Str(mandatory=True)
    sidecar = traits.Dict()


class _WriteReconstructionsOutputSpec(TraitedSpec):
    index_file = File(exists=True)


class WriteReconstructions(RecordingInterface):
    """Write reconstructed images as PNG with a TSV index (stimulus, trials, file)."""

    writes_outputs = True

    input_spec = _WriteReconstructionsInputSpec
    output_spec = _WriteReconstructionsOutputSpec

    def _run(self, runtime):
        with np.load(self.inputs.reconstructions) as data:
            stim_ids, counts, images = data["stim_ids"].astype(str), data["n_trials"], data["images"]
        root = Path(self.inputs.output_dir)
        rows = []
        for stim, count, image in zip(stim_ids, counts, images, strict=True):
            path = Path(self.inputs.image_files[stim])
            pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
            atomic_write(path, lambda tmp, pixels=pixels: Image.fromarray(pixels).save(tmp, format="PNG"))
            rows.append({"stimulus": stim, "trials": int(count), "file": path.relative_to(root).as_posix()})
        index = Path(self.inputs.index_file)
        metrics = read_tsv(self.inputs.per_item, dtype={"stimulus": str})
        write_tsv(index, pd.DataFrame(rows).merge(metrics, on="stimulus", how="left"))
        if self.inputs.sidecar:
            write_json(index.with_suffix(".json"), dict(self.inputs.sidecar))
        self._results["index_file"] = str(index)


class _ReportInputSpec(BaseInterfaceInputSpec):
    output_dir = traits.Str(mandatory=True)
    subject = traits.Str(mandatory=True)
    task = traits.Str(mandatory=True)
    space = traits.Str(mandatory=True)
    resolution = traits.Either(None, traits.Str, default=None, usedefault=True)
    bids_dir = traits.Str(mandatory=True)
    stimuli_folder = traits.Str("stimuli", usedefault=True)
    first_run = traits.Tuple(traits.Either(None, traits.Str), traits.Either(None, traits.Str), mandatory=True)
    boldref = traits.Either(None, File(exists=True), default=None, usedefault=True)
    rois = traits.Dict(traits.Str, traits.Either(None, traits.Str), mandatory=True)
    decoders = traits.List(traits.Tuple(traits.Str, traits.Str), mandatory=True)
    generator = traits.Str("linear", usedefault=True)
    summary = traits.Dict(desc="facts shown at the top of the report")
    methods = traits.Str("", usedefault=True)
    waits_for = traits.List(desc="outputs that must be written before the report (ordering only)")
    waits_for_maps = traits.List(desc="beta-stage maps that must be written before the report (ordering only)")


class _ReportOutputSpec(TraitedSpec):
    out_report = File(exists=True)


class ParticipantReport(RecordingInterface):
    """Build ``sub-<label>.html`` and its figures from the written outputs."""

    writes_outputs = True

    input_spec = _ReportInputSpec
    output_spec = _ReportOutputSpec

    def _run(self, runtime):
        from bids_recon.bids.derivatives import SubjectOutputs
        from bids_recon.reports.participant import build_participant_report

        i = self.inputs
        out = build_participant_report(
            output_dir=Path(i.output_dir), names=SubjectOutputs(i.subject, i.task, i.space, i.resolution),
            bids_dir=Path(i.bids_dir), stimuli_folder=i.stimuli_folder, first_run=tuple(i.first_run),
            boldref=Path(i.boldref) if i.boldref else None, rois=dict(i.rois), decoders=list(i.decoders),
            generator=i.generator, summary=dict(i.summary), methods=i.methods,
        )
        self._results["out_report"] = str(out)
