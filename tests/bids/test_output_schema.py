"""Our own schema check of the derivatives dataset: every output name parses back through the OUTPUTS table
(bids_recon/naming.py), every sidecar has the keys its kind needs, with ``Sources`` as BIDS URIs that resolve to
existing files through ``DatasetLinks``; and the BIDS validator sees every file ``.bidsignore`` does not hide, with
no errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bids_recon.bids.derivatives import (
    BIDS_VERSION,
    BIDSIGNORE,
    bidsignore_text,
    dataset_links,
    describe_label,
    linked_folders,
    source_datasets,
    write_bidsignore,
    write_dataset_description,
    write_descriptions,
)
from bids_recon.interfaces.outputs import sidecar_sources
from bids_recon.naming import (
    OUTPUTS,
    SIDECAR_KEYS,
    SubjectOutputs,
    group_figures_dir,
    group_report_path,
    missing_sidecar_keys,
    output_kind_of,
    own_uri,
    resolve_bids_uri,
    sidecar_path,
    to_bids_uri,
)
from tests.conftest import bids_validator

NAMES = SubjectOutputs("01", "images", "MNI152NLin2009cAsym", "2")

#: One name of each output kind, as the workflows ask for it.
EXAMPLES = {
    "betas": NAMES.betas("01", "02"),
    "design": NAMES.design("01", "02"),
    "stat_map": NAMES.stat_map("01", "rsquare"),
    "trials": NAMES.trials(),
    "roi_mask": NAMES.roi_mask("earlyvisual", "HOCPA"),
    "brain_mask": NAMES.brain_mask(),
    "decoder": NAMES.decoder("earlyvisual", "imagepca"),
    "features": NAMES.features("earlyvisual", "imagepca"),
    "basis": NAMES.path("basis", label="earlyvisual", desc="imagepca"),
    "recon_image": NAMES.recon_image("stim-0001.png", "linear"),
    "recon_index": NAMES.recon_index("linear"),
    "metrics": NAMES.metrics("linear"),
    "encoding_map": NAMES.encoding_map("z+c", "r"),
    "encoding_summary": NAMES.encoding_summary(),
}


def test_examples_cover_every_kind():
    assert set(EXAMPLES) == set(OUTPUTS)


@pytest.mark.parametrize("kind", sorted(OUTPUTS))
def test_each_kind_parses_back_with_its_sidecar_and_extras(kind):
    path = EXAMPLES[kind]
    assert output_kind_of(path)[0] == kind
    for extension in OUTPUTS[kind].extras:
        assert output_kind_of(path.with_name(path.name.replace(OUTPUTS[kind].extension, extension)))[0] == kind
    sidecar = output_kind_of(sidecar_path(path))
    assert (sidecar[0] if sidecar else None) == (kind if kind in SIDECAR_KEYS else None)


@pytest.mark.parametrize("name", [
    "sub-01/func/sub-01_task-images_space-MNI152NLin2009cAsym_res-2_desc-brain_mask.tsv",  # wrong extension
    "sub-01/decoding/sub-01_task-images_space-MNI152NLin2009cAsym_res-2_desc-brain_mask.nii.gz",  # wrong folder
    "sub-01/func/sub-01_task-images_res-2_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz",  # entity order
    "sub-02/func/sub-01_task-images_space-MNI152NLin2009cAsym_res-2_desc-brain_mask.nii.gz",  # another's folder
    "sub-01/func/sub-01_task-images_acq-x_space-MNI152NLin2009cAsym_res-2_desc-brain_mask.nii.gz",  # unknown entity
    "sub-01/recon/sub-01_task-images_desc-linear_recon.json",  # the images have no sidecar
])
def test_names_outside_the_table_do_not_parse(name):
    assert output_kind_of(name) is None


def test_the_more_specific_kind_wins():
    """A participant's ncsnr map has the shape of an encoding map too; it is the beta stage's map."""
    assert output_kind_of(NAMES.stat_map(None, "ncsnr"))[0] == "stat_map"
    assert output_kind_of(NAMES.encoding_map("z", "r"))[0] == "encoding_map"


def test_missing_sidecar_keys():
    entities = output_kind_of(EXAMPLES["betas"])[1]
    assert missing_sidecar_keys("betas", entities, {}) == [
        "Description", "Sources", "Units", "RepetitionTime", "Resolution"]
    full = {"Description": "d", "Sources": ["bids::x"], "Units": "percent signal change", "RepetitionTime": 2.0,
            "Resolution": "r"}
    assert missing_sidecar_keys("betas", entities, full) == []
    assert missing_sidecar_keys("betas", entities, {**full, "Sources": []}) == ["Sources"]
    no_res = output_kind_of(SubjectOutputs("01", "images", "T1w", None).brain_mask())[1]
    assert missing_sidecar_keys("brain_mask", no_res, {"Description": "d", "Sources": ["x"], "Type": "Brain"}) == []


def test_bids_uris(tmp_path):
    raw, fmriprep, out = tmp_path / "ds", tmp_path / "ds" / "derivatives" / "fmriprep", tmp_path / "out"
    links = {"raw": raw, "fmriprep": fmriprep}
    assert to_bids_uri(raw / "sub-01" / "func" / "e.tsv", links, out) == "bids:raw:sub-01/func/e.tsv"
    assert to_bids_uri(fmriprep / "sub-01" / "b.nii.gz", links, out) == "bids:fmriprep:sub-01/b.nii.gz"  # deepest
    assert to_bids_uri((out / "sub-01" / "a b.tsv").as_uri(), links, out) == "bids::sub-01/a b.tsv"
    assert to_bids_uri("bids:raw:x", links, out) == "bids:raw:x"
    assert to_bids_uri(tmp_path / "else" / "m.nii", links, out) == (tmp_path / "else" / "m.nii").as_uri()
    assert own_uri(Path("sub-01") / "x.tsv") == "bids::sub-01/x.tsv"
    uris = {"raw": raw.as_uri(), "rel": "../ds", "doi": "doi:10.18112/openneuro.ds000001.v1.0.0"}
    assert resolve_bids_uri("bids:raw:sub-01/e.tsv", out, uris) == raw / "sub-01" / "e.tsv"
    assert resolve_bids_uri("bids:rel:sub-01/e.tsv", out, uris) == out / "../ds" / "sub-01" / "e.tsv"
    assert resolve_bids_uri("bids::sub-01/x.tsv", out, uris) == out / "sub-01" / "x.tsv"
    for bad in ("sub-01/x.tsv", "bids:raw:/abs", "bids:fmriprep:x", "bids:doi:x"):
        with pytest.raises(ValueError):
            resolve_bids_uri(bad, out, uris)


def test_dataset_description_links_every_dataset(tmp_path):
    raw, fmriprep, other, tf = (tmp_path / n for n in ("ds", "fmriprep", "freesurfer", "templateflow"))
    for folder in (raw, fmriprep, other, tf):
        folder.mkdir()
    found = source_datasets(raw, {"fmriprep": str(fmriprep), "freesurfer": str(other),
                                  "gone": str(tmp_path / "gone")}, templateflow=tf)
    assert found == {"raw": raw, "fmriprep": fmriprep, "freesurfer": other, "templateflow": tf}
    out = tmp_path / "out"
    write_dataset_description(out, found)
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["BIDSVersion"] == BIDS_VERSION and description["DatasetType"] == "derivative"
    assert dataset_links(out) == {name: path.resolve().as_uri() for name, path in found.items()}
    assert linked_folders(out) == {name: path.resolve() for name, path in found.items()}
    with pytest.raises(ValueError, match="''"):
        write_dataset_description(out, {"": raw})


def test_sink_writes_sources_as_bids_uris(tmp_path):
    raw, out = tmp_path / "ds", tmp_path / "out"
    raw.mkdir()
    write_dataset_description(out, {"raw": raw})
    sidecar = sidecar_sources({"Sources": [str(raw / "sub-01" / "e.tsv"), str(out / "sub-01" / "m.nii.gz"),
                                           "bids:raw:kept"],
                               "Files": [{"Source": (raw / "roi.nii.gz").as_uri(), "Labels": [1]}]}, out)
    assert sidecar["Sources"] == ["bids:raw:sub-01/e.tsv", "bids::sub-01/m.nii.gz", "bids:raw:kept"]
    assert sidecar["Files"] == [{"Source": "bids:raw:roi.nii.gz", "Labels": [1]}]


def test_bidsignore_says_why_for_each_pattern(tmp_path):
    lines = write_bidsignore(tmp_path).read_text().splitlines()
    assert lines == bidsignore_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == list(BIDSIGNORE)
    assert all(lines[i].startswith("# ") and len(lines[i]) > 10 for i in range(0, len(lines), 2))


def test_descriptions_come_from_the_table_and_the_sidecars(tmp_path):
    assert write_descriptions(tmp_path) is None  # no file with a desc- label: no table
    func, recon = tmp_path / "sub-01" / "func", tmp_path / "sub-01" / "recon"
    func.mkdir(parents=True)
    recon.mkdir(parents=True)
    roi = func / NAMES.roi_mask("v1", "HOCPA").name
    roi.write_bytes(b"")
    (tmp_path / sidecar_path(NAMES.roi_mask("v1", "HOCPA"))).write_text(json.dumps(
        {"Atlas": "HOCPA", "AtlasDesc": "th25", "Template": "MNI152NLin2009cAsym"}))
    (tmp_path / NAMES.recon_index("linear")).write_text("stimulus\n")
    (tmp_path / sidecar_path(NAMES.recon_index("linear"))).write_text(json.dumps({"Generator": "linear"}))
    (tmp_path / NAMES.recon_image("a.png", "linearsample2")).write_bytes(b"")
    (tmp_path / NAMES.trials()).write_text("x\n")
    rows = dict(line.split("\t", 1) for line in write_descriptions(tmp_path).read_text().splitlines()[1:])
    assert rows == {"desc-HOCPA": describe_label("HOCPA", [{"Atlas": "HOCPA", "AtlasDesc": "th25",
                                                            "Template": "MNI152NLin2009cAsym"}]),
                    "desc-linear": "reconstructions by the 'linear' generator",
                    "desc-linearsample2": "images reconstructed by the 'linear' generator (variant and sample in "
                                          "the label)",
                    "desc-singletrial": describe_label("singletrial", [])}
    assert "HOCPA atlas (desc-th25) of TemplateFlow's tpl-MNI152NLin2009cAsym" in rows["desc-HOCPA"]
    assert json.loads((tmp_path / "descriptions.json").read_text())["Description"]


# --- on the outputs of a real (tiny) run --------------------------------------------------------------------------


def _outputs(out: Path) -> list[Path]:
    """Every file of the output dataset, relative to it, but the logs."""
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.relative_to(out).parts[0] != "logs")


def _participant_files(out: Path) -> list[Path]:
    """The participants' files under ``sub-*/``, but the reports' figures."""
    return [p for p in _outputs(out) if p.parts[0].startswith("sub-") and len(p.parts) > 1 and "figures" not in p.parts]


def test_every_output_name_parses_back_through_the_table(tiny_run):
    out = tiny_run["out"]
    subjects = tiny_run["dataset"].subjects
    files = _outputs(out)
    unnamed = [p for p in _participant_files(out) if output_kind_of(p) is None]
    assert not unnamed, f"files named by no kind of OUTPUTS: {unnamed[:10]}"
    assert {output_kind_of(p)[0] for p in _participant_files(out)} >= {
        "betas", "design", "stat_map", "trials", "roi_mask", "brain_mask", "decoder", "features", "recon_image",
        "recon_index", "metrics"}
    known = {Path("dataset_description.json"), Path(".bidsignore"), Path("descriptions.tsv"), Path("descriptions.json"),
             group_report_path(),
             *(Path(f"sub-{s}.html") for s in subjects)}
    others = [p for p in files if p not in known and not p.parts[0].startswith("sub-") and p.parts[0] != "group"]
    assert not others, f"files outside the participants' folders, group/ and logs/: {others}"
    figures = [p for p in files if "figures" in p.parts]
    assert all(p.parts[:2] in ((f"sub-{s}", "figures") for s in subjects) or p.parent == group_figures_dir()
               for p in figures)


def sidecar_problems(out: Path) -> list[str]:
    """What our schema finds wrong with the participants' files of a derivatives dataset: a file no kind of OUTPUTS
    names, a kind's file without its sidecar, a sidecar without a key its kind needs, a source that is not a BIDS URI
    or names no file."""
    links = dataset_links(out)
    problems = []
    for rel in _participant_files(out):
        found = output_kind_of(rel)
        if found is None:
            problems.append(f"{rel}: named by no kind of OUTPUTS")
            continue
        kind, entities = found
        if rel.suffix == ".json" or kind not in SIDECAR_KEYS or rel.name.endswith(tuple(OUTPUTS[kind].extras)):
            continue
        sidecar_file = out / sidecar_path(rel)
        if not sidecar_file.is_file():
            problems.append(f"{rel}: no sidecar")
            continue
        sidecar = json.loads(sidecar_file.read_text())
        problems += [f"{rel}: no {key}" for key in missing_sidecar_keys(kind, entities, sidecar)]
        for uri in sidecar.get("Sources", []):
            try:
                if not resolve_bids_uri(uri, out, links).is_file():
                    problems.append(f"{rel}: {uri} names no file")
            except ValueError as exc:
                problems.append(f"{rel}: {exc}")
    return problems


def test_every_sidecar_has_its_keys_and_resolvable_sources(tiny_run):
    out = tiny_run["out"]
    links = dataset_links(out)
    assert {"raw", "fmriprep", "templateflow"} <= set(links) and "" not in links
    problems = sidecar_problems(out)
    assert not problems, "\n".join(problems[:20])


def test_betas_sources_name_raw_and_fmriprep(tiny_run):
    out = tiny_run["out"]
    betas = next(p for p in _participant_files(out) if p.name.endswith("_statmap.json")
                 and output_kind_of(p)[0] == "betas")
    sources = json.loads((out / betas).read_text())["Sources"]
    assert {uri.split(":")[1] for uri in sources} == {"raw", "fmriprep"}
    decoder = next(p for p in _participant_files(out) if p.name.endswith("_decoder.json"))
    assert all(uri.startswith("bids::") for uri in json.loads((out / decoder).read_text())["Sources"])


def test_validator_sees_the_masks_and_passes(tiny_run):
    """bids-validator-deno on the output: no errors, and it sees exactly what ``.bidsignore`` leaves (the
    dataset_description and the masks with their sidecars)."""
    exe = bids_validator()
    if exe is None:
        pytest.skip("bids-validator-deno is not installed")
    out = tiny_run["out"]
    proc = subprocess.run([exe, str(out), "--format", "json"], capture_output=True, text=True)
    report = json.loads(proc.stdout)
    errors = [i for i in report["issues"]["issues"] if i.get("severity") == "error"]
    assert proc.returncode == 0 and not errors, errors[:5]
    masks = [p for p in _participant_files(out) if output_kind_of(p)[0] in ("brain_mask", "roi_mask")]
    assert report["summary"]["totalFiles"] == 3 + len(masks)  # and descriptions.tsv, descriptions.json


def test_descriptions_name_every_desc_label(tiny_run):
    out = tiny_run["out"]
    used = {f"desc-{output_kind_of(p)[1]['desc']}" for p in _participant_files(out) if "desc" in output_kind_of(p)[1]}
    table = (out / "descriptions.tsv").read_text().splitlines()
    assert table[0] == "desc_id\tdescription"
    rows = dict(line.split("\t", 1) for line in table[1:])
    assert set(rows) >= used and all(rows.values())
    assert "HOCPA atlas" in rows["desc-HOCPA"] and rows["desc-singletrial"].startswith("single-trial GLM")
