"""Packaging stays consistent: Dockerfile vs CI install, lock file, Boutiques descriptor, HPC examples, templates."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from bids_recon.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _readme_block(marker: str) -> str:
    """The fenced block after ``<!-- marker -->`` in README.md, read as .ci/run reads it."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(f"<!-- {marker} -->")
    fence = [i for i in range(start + 1, len(lines)) if lines[i].startswith("```")]
    return "\n".join(lines[fence[0] + 1:fence[1]])


def _pip_installs(text: str) -> list[list[str]]:
    """Every ``pip install ...`` command in a shell text, as argument lists (line continuations joined)."""
    text = text.replace("\\\n", " ")
    commands = []
    for part in re.split(r"&&|;|\n", text):
        if not re.match(r"\s*(RUN\s+)?pip install ", part):
            continue
        words = shlex.split(part.strip())
        if words[:1] == ["RUN"]:
            words = words[1:]
        if words[:2] == ["pip", "install"]:
            commands.append(words[2:])
    return commands


def _install_facts(commands: list[list[str]], project: str, variables: dict[str, str]) -> dict:
    """torch version, constraints files and extras of the project install, from pip install argument lists."""
    facts: dict = {"torch": None, "constraints": set(), "extras": None}
    for words in commands:
        words = [re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), ""), w) for w in words]
        for i, word in enumerate(words):
            if word == "-c":
                facts["constraints"].add(words[i + 1])
            if word.startswith("torch=="):
                facts["torch"] = word.split("==", 1)[1]
            if word.startswith(project):
                match = re.fullmatch(re.escape(project) + r"(?:\[([^\]]*)\])?", word)
                assert match, f"unexpected project requirement {word!r}"
                facts["extras"] = {e.strip() for e in (match.group(1) or "").split(",") if e.strip()}
                facts["project_constrained"] = "-c" in words
    return facts


def _docker_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=\"?([^\"\n]*)\"?$", DOCKERFILE, flags=re.M))


def test_dockerfile_installs_like_ci():
    ci = _install_facts(_pip_installs(_readme_block("ci:install-and-demo")), ".", {})
    docker_vars = _docker_args()
    docker = _install_facts(_pip_installs(DOCKERFILE), ".", docker_vars)
    assert ci["torch"] and ci["torch"] == docker["torch"] == docker_vars["TORCH_VERSION"], (ci, docker)
    assert ci["constraints"] == docker["constraints"] == {"requirements/constraints.txt"}, (ci, docker)
    assert ci["project_constrained"] and docker["project_constrained"]
    assert docker["extras"] is not None and ci["extras"] is not None
    assert docker["extras"] <= ci["extras"], "the image must not install extras CI does not test"
    pins = (ROOT / "requirements/constraints.txt").read_text()
    assert f"\ntorch=={ci['torch']}\n" in pins, "the lock pins another torch than CI and the image install"


def test_dockerfile_python_satisfies_requires_python():
    from packaging.specifiers import SpecifierSet

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert _docker_args()["PYTHON_VERSION"] + ".0" in SpecifierSet(requires)
    lock_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert _docker_args()["PYTHON_VERSION"] == lock_python, "the lock was made with another Python than the image's"


def test_lock_pins_every_declared_dependency():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    pinned = {}
    for line in (ROOT / "requirements/constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and not set(version) & set("<>=!~*,"), f"not an exact pin: {line}"
            pinned[_canonical(name)] = version
    missing = [r for r in declared if _canonical(Requirement(r).name) not in pinned]
    assert not missing, f"{missing} are not in requirements/constraints.txt: run python scripts/update_constraints.py"
    for text in declared:  # the pinned version satisfies pyproject's range
        req = Requirement(text)
        assert req.specifier.contains(pinned[_canonical(req.name)], prereleases=True), (text, pinned[req.name])


def test_dockerfile_runtime_settings():
    assert re.search(r'^ENTRYPOINT \["bids_recon"\]$', DOCKERFILE, flags=re.M)
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NIPYPE_NO_ET", "HF_HUB_OFFLINE"):
        assert re.search(rf"^\s+{var}=", DOCKERFILE, flags=re.M), var
    assert "prefetch_templates.py --templateflow-home /opt/templateflow" in DOCKERFILE
    assert re.search(r"^\s+TEMPLATEFLOW_HOME=/opt/templateflow", DOCKERFILE, flags=re.M)
    assert re.search(r"^\s+BIDS_RECON_DIFFUSION_MODEL=/opt/models/stable-diffusion-v1-4", DOCKERFILE, flags=re.M)
    for label in ("title", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{label}=" in DOCKERFILE, label
    assert "model_checksum.py" in DOCKERFILE and "DIFFUSION_MODEL_SHA256" in DOCKERFILE
    assert re.search(r"^ARG DIFFUSION_MODEL=none$", DOCKERFILE.split("\nFROM ")[0], flags=re.M), \
        "DIFFUSION_MODEL is used in FROM: it must be declared before the first stage"


def _stages_needed(build_args: dict[str, str]) -> tuple[list[str], set[str]]:
    """The Dockerfile's stages a build of the final stage runs (as BuildKit and podman's stage skipping choose them)
    and the outside images it pulls, with ``build_args`` over the Dockerfile's defaults."""
    values = {**_docker_args(), **build_args}
    stages: dict[str, dict] = {}
    current = None
    for line in DOCKERFILE.splitlines():
        line = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), ""), line)
        if match := re.match(r"FROM (\S+) AS (\S+)$", line):
            current = match.group(2)
            stages[current] = {"from": match.group(1), "copies": []}
        elif current and (match := re.match(r"COPY --from=(\S+)", line)):
            stages[current]["copies"].append(match.group(1))
    needed, outside, todo = [], set(), ["final"]
    while todo:
        stage = todo.pop()
        if stage in needed:
            continue
        needed.append(stage)
        for source in [stages[stage]["from"], *stages[stage]["copies"]]:
            (todo.append if source in stages else outside.add)(source)
    return needed, outside - {"scratch"}


def test_cpu_build_needs_no_cuda_image_uv_or_templateflow():
    cpu = {"BASE": "cpu", "BASE_IMAGE": "localhost/debian-bookworm-python", "TEMPLATES": "local"}
    stages, outside = _stages_needed(cpu)
    assert outside == {"localhost/debian-bookworm-python"}, outside
    assert "base-cpu" in stages and not {"base-cuda", "uv", "templates-fetch"} & set(stages)
    assert "templateflow" in stages  # the --build-context templateflow=FOLDER
    stages, outside = _stages_needed({})  # the default: CUDA
    assert outside == {_docker_args()["BASE_IMAGE"], f"ghcr.io/astral-sh/uv:{_docker_args()['UV_VERSION']}"}
    assert _docker_args()["BASE_IMAGE"].startswith("nvidia/cuda:") and "templates-fetch" in stages
    assert re.search(r"^RUN python scripts/prefetch_templates.py --templateflow-home /opt/templateflow --check",
                     DOCKERFILE.split("AS templates-local")[1], flags=re.M), "local templates are checked complete"
    # the base's Python is the one CI runs, checked in the CPU base (the CUDA base installs that version with uv)
    assert "the base image has Python" in DOCKERFILE.split("AS base-cpu")[1].split("\nFROM ")[0]


def test_build_image_script_checks_the_container_against_the_host():
    script = (ROOT / "scripts/build_image.sh").read_text()
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(ROOT / "scripts/build_image.sh")]).returncode == 0
    assert "--build-arg BASE=cpu" in script and "--build-arg TEMPLATES=local" in script
    assert '--build-context "templateflow=$TEMPLATES"' in script
    container = script.split("CONTAINER=(")[1].split(")")[0]
    for option in ("--network none", "--user 1001:1001", ":/data:ro"):  # non-root, offline, input read-only
        assert option in container, option
    assert "git clone" in script and "sha256sum" in script and "die \"the container's outputs differ" in script
    # the host run gets the image's thread settings (Dockerfile ENV) and nothing else from the calling shell
    threads = re.search(r"THREADS=\((.*)\)", script).group(1).split()
    for setting in threads:
        name, value = setting.split("=")
        assert re.search(rf"^\s+{name}={value}\b", DOCKERFILE, flags=re.M), setting
    assert "env -i" in script


def test_singularity_builds_from_the_docker_image():
    from bids_recon.cli.boutiques import CONTAINER_IMAGE

    definition = (ROOT / "singularity/bids_recon.def").read_text()
    assert re.search(r"^Bootstrap: docker$", definition, flags=re.M)
    assert re.search(rf"^From: {re.escape(CONTAINER_IMAGE)}$", definition, flags=re.M)
    assert re.search(r'^\s+exec bids_recon "\$@"$', definition, flags=re.M)
    assert f"VERSION={CONTAINER_IMAGE.rsplit(':', 1)[1]}" in DOCKERFILE


def test_singularity_local_archive_definition_matches():
    """singularity/bids_recon-local.def: the same definition, bootstrapped from a local image archive."""
    registry = (ROOT / "singularity/bids_recon.def").read_text()
    local = (ROOT / "singularity/bids_recon-local.def").read_text()
    assert registry[registry.index("\n%"):] == local[local.index("\n%"):], "the sections after the header differ"
    assert re.search(r"^Bootstrap: oci-archive$", local, flags=re.M)
    archive = re.search(r"^From: (\S+)$", local, flags=re.M).group(1)
    assert archive.endswith(".tar") and "/" not in archive
    assert f"podman save --format oci-archive -o {archive} " in local  # the comment's command makes that file
    assert "docker-archive" in local


def test_boutiques_descriptor_is_generated_from_the_parser():
    from bids_recon.cli.boutiques import build_descriptor, command_line_flag, render_descriptor

    committed = (ROOT / "boutiques/bids_recon.json").read_text()
    assert committed == render_descriptor(), \
        "boutiques/bids_recon.json is stale: python -m bids_recon.cli.boutiques boutiques/bids_recon.json"
    descriptor = json.loads(committed)
    flags = {i.get("command-line-flag") for i in descriptor["inputs"]}
    for action in build_parser()._actions:
        if action.option_strings and "--bids-exec-spec" not in action.option_strings:
            assert command_line_flag(action) in flags, action.option_strings
    assert build_descriptor()["command-line"].split()[0] == "bids_recon"


def test_boutiques_descriptor_validates():
    pytest.importorskip("boutiques")
    from boutiques.validator import validate_descriptor

    validate_descriptor(json.loads((ROOT / "boutiques/bids_recon.json").read_text()))


def test_boutiques_invocation_renders_a_command_the_parser_accepts(tmp_path):
    """Boutiques' own command-line rendering of an invocation parses with build_parser()."""
    pytest.importorskip("boutiques")
    invocation = {"InputDataset": [str(tmp_path)], "OutputLocation": str(tmp_path / "out"),
                  "AnalysisLevel": "participant", "SubjectLabel": ["01", "02"], "Derivatives": ["fmriprep=/d"],
                  "Nprocs": 2, "SkipBidsValidation": True, "RoiMask": "earlyvisual=/m.nii.gz:1"}
    descriptor = tmp_path / "d.json"
    descriptor.write_text((ROOT / "boutiques/bids_recon.json").read_text())
    invocation_file = tmp_path / "i.json"
    invocation_file.write_text(json.dumps(invocation))
    from boutiques import bosh

    command = bosh(["exec", "simulate", str(descriptor), "-i", str(invocation_file)]).shell_command
    typed = vars(build_parser().parse_args(shlex.split(command)[1:]))
    assert typed["execution.participant_label"] == ["01", "02"] and typed["nipype.nprocs"] == 2
    assert typed["execution.skip_bids_validation"] is True
    assert typed["workflow.rois.user_masks"] == {"earlyvisual": "/m.nii.gz:1"}


def _slurm_bids_recon_args(script: str) -> list[str]:
    """The BIDS_RECON_ARGS array of the SLURM script, with its shell variables given example values."""
    body = re.search(r"^BIDS_RECON_ARGS=\(\n(.*?)^\)", script, flags=re.M | re.S)
    assert body, "BIDS_RECON_ARGS=( ... ) not found"
    values = {"LABEL": "01", "SLURM_CPUS_PER_TASK": "4", "MEM_GB": "8"}
    text = re.sub(r"\$\{(\w+)(?::-[^}]*)?\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], body.group(1))
    return shlex.split(text, comments=True)


def test_slurm_example_is_valid():
    script = (ROOT / "hpc/slurm_array.sh").read_text()
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(ROOT / "hpc/slurm_array.sh")]).returncode == 0
    typed = vars(build_parser().parse_args(_slurm_bids_recon_args(script)))
    assert typed["execution.analysis_level"] == "participant" and typed["execution.participant_label"] == ["01"]
    assert typed["execution.work_dir"] == "/work" and typed["nipype.nprocs"] == 4 and typed["nipype.mem_gb"] == 8.0
    assert typed["execution.derivatives"] == {"fmriprep": "/fmriprep"}
    assert "#SBATCH --array" in script or "--array=" in script
    assert re.search(r"apptainer run \$NV --cleanenv", script)
    for bind in ("/data:ro", "/fmriprep:ro", ":/out", "$SCRATCH\":/work"):  # every path bids_recon gets is bound
        assert bind in script, bind
    assert "code=$?" in script and "exit $code" in script and "exit_codes.tsv" in script
    assert "SLURM_TMPDIR" in script  # work dir on node-local scratch


def test_nipype_plugin_example_is_valid(tmp_path):
    from nipype.pipeline.plugins.slurm import SLURMPlugin

    from bids_recon.cli.run import build_config

    plugin_file = ROOT / "hpc/nipype_slurm.yml"
    parser = build_parser()
    args = parser.parse_args([str(tmp_path), str(tmp_path / "out"), "participant", "--use-plugin", str(plugin_file)])
    config = build_config(args, parser)
    assert config.nipype.plugin == "SLURM"
    accepted = {"sbatch_args", "template", "retry_timeout", "max_tries", "jobid_re", "max_jobs",
                "dont_resubmit_completed_jobs", "status_callback"}
    assert set(config.nipype.plugin_args) <= accepted, set(config.nipype.plugin_args) - accepted
    SLURMPlugin(plugin_args=config.nipype.plugin_args)  # nipype accepts them
    assert yaml.safe_load(plugin_file.read_text())["plugin_args"]["sbatch_args"].startswith("--")


def test_prefetched_templates_are_what_the_roi_stage_reads(monkeypatch):
    """required_templates() lists the atlas and label-table queries atlas_rois makes (same settings)."""
    import nibabel as nib
    import numpy as np

    from bids_recon.rois import RoiParams, atlas
    from bids_recon.rois.templates import required_templates

    calls = []

    class Stop(Exception):
        pass

    def record(template, **query):
        calls.append((template, query))
        if len(calls) == 2:
            raise Stop
        return Path("unused")

    monkeypatch.setattr(atlas, "templateflow_file", record)
    cfg = RoiParams()
    with pytest.raises(Stop):
        atlas.atlas_rois(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)), cfg.labels, cfg)
    listed = [(q.template, q.query) for q in required_templates(cfg)]
    for call in calls:
        assert call in listed, call


def test_prefetch_check_finds_the_simulated_templates(tiny_dataset, tmp_path):
    script = ROOT / "scripts/prefetch_templates.py"
    ok = subprocess.run([sys.executable, str(script), "--check", "--templateflow-home",
                         str(tiny_dataset.templateflow_dir)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    empty = subprocess.run([sys.executable, str(script), "--check", "--templateflow-home", str(tmp_path / "tf")],
                           capture_output=True, text=True)
    assert empty.returncode == 1 and "atlas-HOCPA" not in empty.stdout and "atlas=HOCPA" in empty.stderr


def test_model_checksum_detects_changes(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from model_checksum import folder_sha256, main
    finally:
        sys.path.pop(0)
    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text("{}")
    (model / "unet" / "w.bin").write_bytes(b"\x00\x01")
    (model / ".cache").mkdir()
    (model / ".cache" / "lock").write_text("ignored")
    digest = folder_sha256(model)
    assert main([str(model), "--expect", digest]) == 0
    (model / "unet" / "w.bin").write_bytes(b"\x00\x02")
    assert main([str(model), "--expect", digest]) == 1
