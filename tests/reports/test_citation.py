"""Methods boilerplate: every participant run writes logs/<run>/CITATION.md and .bib from the built workflow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bids_recon.bids.derivatives import CITATION_FILES
from bids_recon.config import Config
from bids_recon.reports.citation import REFERENCES, citation_bibtex, citation_markdown, cited


@pytest.fixture(scope="module")
def built(tiny_dataset):
    """The participant workflows of the tiny dataset, built (not run), with their configuration."""
    from bids_recon.bids.layout import collect_inputs
    from bids_recon.workflows.base import init_bids_recon_wf

    config = Config()
    config.execution.bids_dir = str(tiny_dataset.bids_dir)
    config.execution.output_dir = str(tiny_dataset.bids_dir.parent / "cite_out")
    config.execution.work_dir = str(tiny_dataset.bids_dir.parent / "cite_work")
    config.execution.derivatives = {"fmriprep": str(tiny_dataset.fmriprep_dir)}
    config.execution.run_id = "test-run"
    inputs = collect_inputs(tiny_dataset.bids_dir, tiny_dataset.fmriprep_dir, [], [], None, {}, "MNI152NLin2009cAsym",
                            "2")
    return init_bids_recon_wf(config, inputs), config, inputs


def test_text_comes_from_the_workflow_descriptions(built):
    from bids_recon.workflows.participant import participant_methods

    workflow, config, inputs = built
    text = citation_markdown(workflow, config)
    for subject_inputs in inputs.values():
        assert " ".join(participant_methods(config, subject_inputs)) in text
    assert "test-run" in text
    keys = re.findall(r"^- \[(\w+)\]", text, flags=re.M)
    assert keys == [ref.key for ref in cited(config)]
    assert {"takagi2023", "gorgolewski2011", "ciric2022", "desikan2006", "prince2022", "mackay1992",
            "horn1965"} <= set(keys)
    assert "rombach2022" not in keys  # the linear generator ran, not latent diffusion
    assert "rokem2020" not in keys  # the default ridge is the marginal likelihood's, not the fractional ridge


def test_references_follow_the_configuration():
    config = Config()
    config.workflow.rois.user_masks = {name: "mask.nii.gz" for name in config.workflow.rois.labels}
    config.workflow.generate.generator = "diffusion"
    keys = {ref.key for ref in cited(config)}
    assert "ciric2022" not in keys and "desikan2006" not in keys  # no atlas used
    assert "rombach2022" in keys
    bib = citation_bibtex(config)
    assert bib.count("@") == len(keys)
    assert len({ref.key for ref in REFERENCES}) == len(REFERENCES)
    for ref in REFERENCES:  # every entry is balanced BibTeX with its own key
        assert ref.bibtex.startswith(("@article{" + ref.key + ",", "@inproceedings{" + ref.key + ","))
        assert ref.bibtex.count("{") == ref.bibtex.count("}")


def test_participant_run_writes_citation_files(tiny_dataset, tmp_path, monkeypatch):
    """cli.run writes the boilerplate after building the workflow (the run itself is skipped here)."""
    from nipype.pipeline import engine as pe

    from bids_recon.cli.run import main

    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tiny_dataset.templateflow_dir))
    monkeypatch.setattr(pe.Workflow, "run", lambda self, *args, **kwargs: None)
    out = tmp_path / "out"
    code = main([str(tiny_dataset.bids_dir), str(out), "participant", "-d", f"fmriprep={tiny_dataset.fmriprep_dir}",
                 "-w", str(tmp_path / "work"), "--skip-bids-validation", "--participant-label", "01"])
    assert code == 0
    (log_dir,) = [p for p in (out / "logs").iterdir() if p.is_dir()]
    md, bib = (Path(log_dir) / name for name in CITATION_FILES)
    assert "GLMsingle-style estimator" in md.read_text() and "@article{gorgolewski2011," in bib.read_text()
