"""The workflows are built (never run here) from the settings: the graph, the sinks' names, the methods text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bids_recon.bids.layout import collect_inputs
from bids_recon.config import Config
from bids_recon.generate.card import GeneratorCard, generator_card, generator_cards
from bids_recon.naming import output_path
from bids_recon.params import setting
from bids_recon.workflows.base import init_bids_recon_wf
from bids_recon.workflows.generators import BUILDERS, generator_builder
from bids_recon.workflows.participant import participant_methods


@pytest.fixture(scope="module")
def inputs(tiny_dataset):
    return collect_inputs(tiny_dataset.bids_dir, tiny_dataset.fmriprep_dir)


def _config(tiny_dataset, tmp_path: Path, **changes) -> Config:
    config = Config()
    ex = config.execution
    ex.bids_dir, ex.output_dir, ex.work_dir = str(tiny_dataset.bids_dir), str(tmp_path / "out"), str(tmp_path / "w")
    ex.derivatives = {"fmriprep": str(tiny_dataset.fmriprep_dir)}
    ex.run_id, ex.device = "graph-test", "cpu"
    for key, value in changes.items():
        target = config
        *path, name = key.split(".")
        for part in path:
            target = getattr(target, part)
        setattr(target, name, value)
    return config


def _sinks(workflow) -> dict[str, Path]:
    """Every ``ds_*`` node that names its output by entities -> the output path."""
    found = {}
    for name in workflow.list_node_names():
        node = workflow.get_node(name)
        if hasattr(node.inputs, "entities") and hasattr(node.inputs, "kind"):
            found[name] = output_path(node.inputs.kind, dict(node.inputs.entities), node.inputs.extension)
    return found


def _descriptions(workflow) -> list[str]:
    from bids_recon.reports.citation import workflow_descriptions

    return [text for _, text in workflow_descriptions(workflow)]


def test_linear_graph(tiny_dataset, inputs, tmp_path):
    config = _config(tiny_dataset, tmp_path, **{"workflow.generate.linear.n_components": 17})
    workflow = init_bids_recon_wf(config, inputs)
    nodes = set(workflow.list_node_names())
    for subject in tiny_dataset.subjects:
        prefix = f"sub_{subject}_wf."
        for node in ("betas_wf.combine_runs", "betas_wf.subject_mask", "rois_wf.rois", "linear_wf.decode",
                     "linear_wf.reconstruct", "linear_wf.evaluate", "linear_wf.ds_metrics", "report"):
            assert prefix + node in nodes, node
        assert not any(n.startswith(prefix + "diffusion_wf") for n in nodes)
        decode = workflow.get_node(prefix + "linear_wf.decode")
        assert decode.inputs.roi == "earlyvisual" and decode.inputs.target == "imagepca"
        assert decode.inputs.params["alphas"] == config.workflow.decoding.alphas
        features = workflow.get_node(prefix + "linear_wf.image_features")
        assert features.inputs.params["n_components"] == 17
        glm = workflow.get_node(prefix + "betas_wf.betas_ses01")
        assert glm.inputs.params["estimator"] == "fithrf-denoise-rr"
        evaluate = workflow.get_node(prefix + "linear_wf.evaluate")
        assert evaluate.inputs.params["metrics"] == ["all"] and evaluate.inputs.device == "cpu"
        assert set(evaluate.inputs.weights) == {"alexnet", "clip", "efficientnet_b1", "inception_v3", "swav"}
        assert evaluate.inputs.hash_cache.startswith(config.execution.work_dir)
        ds_metrics = workflow.get_node(prefix + "linear_wf.ds_metrics")
        assert ds_metrics.inputs.sidecar["PublishedComparison"]["Comparable"] is False
    sinks = _sinks(workflow)
    paths = list(sinks.values())
    assert len(paths) == len(set(paths)), "two sinks write the same file"
    n_runs = sum(len(i.runs) for i in inputs.values())
    assert sum(p.name.endswith("_stat-effect_statmap.nii.gz") for p in paths) == n_runs
    assert {p.parts[1] for p in paths if p.parts[1] != "func" and not p.parts[1].startswith("ses-")} == \
        {"decoding", "recon"}
    assert not Path(config.execution.work_dir).exists()  # built, never run


def test_diffusion_graph(tiny_dataset, inputs, tiny_sd, tmp_path):
    config = _config(tiny_dataset, tmp_path, **{"workflow.generate.generator": "diffusion"})
    config.workflow.generate.diffusion.model = str(tiny_sd)
    config.workflow.generate.diffusion.steps = 7
    config.workflow.generate.diffusion.c_roi = "earlyvisual"
    workflow = init_bids_recon_wf(config, {"01": inputs["01"]})
    nodes = set(workflow.list_node_names())
    prefix = "sub_01_wf.diffusion_wf."
    for node in ("stimulus_latents", "decode_z", "decode_c", "reconstruct", "evaluate", "ds_reconstructions",
                 "ds_metrics", "ds_decoder_z", "ds_decoder_c"):
        assert prefix + node in nodes, node
    assert not any(n.startswith("sub_01_wf.linear_wf") for n in nodes)
    assert workflow.get_node(prefix + "decode_c").inputs.roi == "earlyvisual"
    assert workflow.get_node(prefix + "reconstruct").inputs.params["steps"] == 7
    assert workflow.get_node(prefix + "reconstruct").inputs.model_identity["ModelPath"] == str(tiny_sd)
    sinks = {p.name for p in _sinks(workflow).values()}
    assert "sub-01_task-images_label-earlyvisual_desc-textembedding_decoder.npz" in sinks
    text = " ".join(_descriptions(workflow))
    assert "DDIM 7 steps" in text and "mapped earlyvisual betas to z and earlyvisual betas to c" in text
    assert "With 5 samples per image, a metric's value is the mean over the samples" in text
    evaluate = workflow.get_node(prefix + "evaluate")
    assert evaluate.inputs.params["selection"] == "mean" and "swav" in evaluate.inputs.weights
    sidecar = workflow.get_node(prefix + "ds_metrics").inputs.sidecar
    assert sidecar["ModelPath"] == str(tiny_sd) and "PublishedComparison" in sidecar


def test_latent_graph(tiny_dataset, inputs, tmp_path):
    import hashlib

    from bids_recon.io import read_tsv, write_tsv
    from bids_recon.sim.faces import latents_table, make_generator, save_generator

    stim_files = sorted(read_tsv(tiny_dataset.truth_dir / "stimuli.tsv")["stim_file"])
    write_tsv(tmp_path / "latents.tsv", latents_table(stim_files, np.zeros((len(stim_files), 4), np.float32)))
    generator = save_generator(make_generator(4, 16), tmp_path / "gan.pt")
    config = _config(tiny_dataset, tmp_path, **{"workflow.generate.generator": "latent"})
    config.workflow.generate.latent.latents = str(tmp_path / "latents.tsv")
    config.workflow.generate.latent.generator = str(generator)
    workflow = init_bids_recon_wf(config, {"01": inputs["01"]})
    nodes = set(workflow.list_node_names())
    prefix = "sub_01_wf.latent_wf."
    for node in ("latent_targets", "union_rois", "decode", "reconstruct", "evaluate", "ds_targets", "ds_decoder",
                 "ds_decoded", "ds_reconstructions", "ds_metrics"):
        assert prefix + node in nodes, node
    assert not any(n.startswith("sub_01_wf.linear_wf") for n in nodes)
    decode = workflow.get_node(prefix + "decode")
    assert (decode.inputs.roi, decode.inputs.target) == ("visual", "latent")
    assert workflow.get_node(prefix + "union_rois").inputs.rois == ["earlyvisual", "highervisual"]
    identity = workflow.get_node(prefix + "reconstruct").inputs.identity
    assert identity["GeneratorSHA256"] == hashlib.sha256(generator.read_bytes()).hexdigest()
    assert identity["GeneratorLatentDimension"] == 4 and identity["GeneratorImageShape"] == [3, 16, 16]
    for sink in ("ds_targets", "ds_decoder", "ds_decoded", "ds_metrics"):
        assert workflow.get_node(prefix + sink).inputs.sidecar["GeneratorSHA256"] == identity["GeneratorSHA256"]
    assert workflow.get_node(prefix + "ds_reconstructions").inputs.sidecar["GeneratorSHA256"] == \
        identity["GeneratorSHA256"]
    sinks = {p.name for p in _sinks(workflow).values()}
    assert {"sub-01_task-images_label-visual_desc-latent_decoder.npz", "sub-01_task-images_desc-latent_metrics.tsv",
            "sub-01_task-images_desc-latenttargets_features.npz"} <= sinks
    text = " ".join(_descriptions(workflow))
    assert "Following Dado et al. (2022)" in text and "mapped the union of earlyvisual, highervisual betas" in text
    assert "images in [-1, 1]" in text
    config.workflow.generate.latent.roi = "highervisual"
    single = init_bids_recon_wf(config, {"01": inputs["01"]})
    assert "sub_01_wf.latent_wf.union_rois" not in set(single.list_node_names())
    assert single.get_node(prefix + "decode").inputs.roi == "highervisual"


def test_evaluation_follows_its_settings_and_the_weights_on_disk(tiny_dataset, inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = _config(tiny_dataset, tmp_path, **{"workflow.evaluate.metrics": ["ssim", "alexnet5"],
                                                "workflow.evaluate.dataset": "nsd",
                                                "workflow.stimuli.test_split": "shared1000=True"})
    node = "sub_01_wf.linear_wf.evaluate"
    before = init_bids_recon_wf(config, {"01": inputs["01"]})
    assert before.get_node(node).inputs.weights == {"alexnet": "absent"}  # only the networks of the metrics
    text = " ".join(_descriptions(before))
    assert "SSIM (425 px)" in text and "in AlexNet(5) feature space" in text and "CLIP" not in text
    sidecar = before.get_node("sub_01_wf.linear_wf.ds_metrics").inputs.sidecar
    assert sidecar["PublishedComparison"]["Comparable"] is True
    from bids_recon.evaluate.networks import network_specs

    weights = network_specs()["alexnet"].weights_path()
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"fetched")  # the node's inputs change: a rerun evaluates again instead of reusing the cache
    after = init_bids_recon_wf(config, {"01": inputs["01"]})
    assert after.get_node(node).inputs.weights["alexnet"].startswith(str(weights))


def test_methods_come_from_the_settings_that_run(tiny_dataset, inputs, tmp_path):
    config = _config(tiny_dataset, tmp_path, **{"workflow.glm.estimator": "lss", "workflow.evaluate.image_size": 256,
                                                "workflow.glm.high_pass_hz": 0.02,
                                                "workflow.glm.drift_model": "cosine"})
    workflow = init_bids_recon_wf(config, {"01": inputs["01"]})
    paragraphs = _descriptions(workflow)
    assert paragraphs == participant_methods(config, inputs["01"])  # the report's text is the workflow's
    text = " ".join(paragraphs)
    assert "least-squares-separate" in text and "0.02 Hz" in text and "(256 px)" in text
    assert "425" not in text and "library of" not in text  # nothing the run did not do
    default = " ".join(participant_methods(_config(tiny_dataset, tmp_path), inputs["01"]))
    assert "Legendre polynomial drift" in default and "marginal likelihood" in default and "Hz)" not in default
    assert "GLMsingle's library of 20 HRFs" in default and "parallel analysis" in default


def test_every_registered_generator_is_complete():
    cards = generator_cards()
    assert list(cards)[:2] == ["linear", "diffusion"] and [c.name for c in cards.values() if c.default] == ["linear"]
    for name, card in cards.items():
        assert isinstance(card, GeneratorCard) and card.name == name and card.summary
        defaults = card.params()
        for field in card.roi_settings:
            assert isinstance(getattr(defaults, field), str)
        assert type(card).methods is not GeneratorCard.methods
        assert generator_builder(name) is BUILDERS[name]  # every card has its builder, under its name
    with pytest.raises(Exception, match="unknown generator 'gan'"):
        generator_card("gan")


@dataclass
class _ToyParams:
    """Settings of the toy generator of the test below."""

    roi: str = setting("earlyvisual", doc="ROI of the toy decoder")
    brightness: float = setting(0.5, ge=0, le=1, doc="grey level of every toy image")


@pytest.fixture
def toy_generator():
    """A generator defined here, as a new module would: a card (settings, flags, decoder, a reference, a variant,
    a download) and a builder, registered in-process; unregistered afterwards."""
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from bids_recon.download import FetchItem
    from bids_recon.generate.card import GENERATORS, OutputVariant, register
    from bids_recon.workflows.generators import builder

    class ToyCard(GeneratorCard):
        name = "toy"
        params = _ToyParams
        summary = "grey images of one brightness (a test)"
        roi_settings = ("roi",)
        references = ("rombach2022",)
        fetch_group = "toy"
        variants = (OutputVariant("grey", "grey", sampled=True),)

        def add_options(self, option, paths):
            option("--toy-brightness", key="brightness", type=float)

        def decoders(self, config):
            return [(self.settings(config).roi, "toytarget")]

        def methods(self, config):
            return f"Images were grey at {self.settings(config).brightness:g}."

        def add_fetch_options(self, option):
            option("--toy-source", key="roi", help="where the toy's file is")

        def downloads(self, params, layout, report=print):
            return [FetchItem(self.fetch_group, layout.root / "toy.bin", "url", f"https://example.org/{params.roi}")]

    def init_toy_wf(card, config, inputs, names, device, name):
        wf = pe.Workflow(name=name)
        wf.__desc__ = card.methods(config)
        inputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials", "mask_file", "roi_files"]),
                            name="inputnode")
        outputnode = pe.Node(niu.IdentityInterface(fields=["out_files", "features"]), name="outputnode")
        wf.connect(inputnode, "betas", outputnode, "out_files")
        return wf

    register(ToyCard)
    yield builder(ToyCard)(init_toy_wf)
    GENERATORS.pop("toy")
    BUILDERS.pop("toy")


def test_a_toy_generator_is_one_card_and_one_builder(toy_generator, tiny_dataset, inputs, tmp_path):
    """The parser, the configuration, fetch, the citations, the output names and the participant workflow pick up
    a generator registered in-process: adding one edits no other module."""
    from bids_recon.cli import fetch
    from bids_recon.cli.parser import build_parser
    from bids_recon.errors import InvariantError, UsageError
    from bids_recon.generate.card import register
    from bids_recon.offline import build_plan, fetch_groups
    from bids_recon.reports.citation import cited

    args = build_parser().parse_args(["bids", "out", "participant", "--generator", "toy", "--toy-brightness", "0.25"])
    assert getattr(args, "workflow.generate.toy.brightness") == 0.25
    config = Config.from_dict({"workflow": {"generate": {"generator": "toy", "toy": {"brightness": 0.25}}}})
    assert config.workflow.generate.params == _ToyParams(brightness=0.25)
    for table, problem in (({"brightness": 2.0}, "toy.brightness. = 2.0 .*<= 1"),
                           ({"roi": "nowhere"}, "toy.roi. = 'nowhere' .* is not an ROI")):
        with pytest.raises(UsageError, match=problem):
            Config.from_dict({"workflow": {"generate": {"generator": "toy", "toy": table}}})
    assert "rombach2022" in {r.key for r in cited(config)}
    default = Config()
    assert default.workflow.generate.toy == _ToyParams() and default.workflow.generate.generator == "linear"
    assert "rombach2022" not in {r.key for r in cited(default)}
    card = generator_card("toy")
    assert card.image_desc("grey", 0) == "toygreysample1" and card.variant_labels() == {"grey": "grey"}
    assert "toy" in fetch_groups() and "--toy-source" in fetch.build_parser().format_help()
    assert [i.url for i in build_plan(tmp_path, ["toy"], generators={"toy": _ToyParams(roi="there")})] == \
        ["https://example.org/there"]

    config = _config(tiny_dataset, tmp_path, **{"workflow.generate.generator": "toy"})
    workflow = init_bids_recon_wf(config, {"01": inputs["01"]})
    assert "sub_01_wf.toy_wf.outputnode" in workflow.list_node_names()
    assert participant_methods(config, inputs["01"])[3] == "Images were grey at 0.5."

    class Unbuilt(GeneratorCard):  # a card without a builder is a clear error, not a silent skip
        name = "unbuilt"

    register(Unbuilt)
    try:
        with pytest.raises(InvariantError, match="'unbuilt' has a card .* but no workflow builder"):
            generator_builder("unbuilt")
    finally:
        from bids_recon.generate.card import GENERATORS

        GENERATORS.pop("unbuilt")
    with pytest.raises(UsageError, match="unknown generator 'gan'"):
        generator_builder("gan")


def test_import_graph_replaces_the_glm_stage(tiny_dataset, tmp_path):
    """--betas: an import sub-workflow (mask, a node per session, split, the GLM stage's combine_runs) instead of
    the GLM's nodes; everything after it unchanged; the methods say where the betas came from."""
    from bids_recon.bids.layout import collect_imported

    source = tiny_dataset.bids_dir / "derivatives" / "GLMsingle"
    config = _config(tiny_dataset, tmp_path, **{"workflow.glm.betas": f"glmsingle={source}",
                                                "workflow.rois.voxel_selection": "top:40"})
    imported = collect_imported(config.workflow.glm.betas, tiny_dataset.bids_dir, config.workflow.stimuli)
    assert set(imported) == set(tiny_dataset.subjects) and not imported["01"].runs
    workflow = init_bids_recon_wf(config, imported)
    nodes = set(workflow.list_node_names())
    for subject in tiny_dataset.subjects:
        prefix = f"sub_{subject}_wf."
        for node in ("betas_wf.import_mask", "betas_wf.import_sesall", "betas_wf.import_split",
                     "betas_wf.combine_runs", "rois_wf.rois", "linear_wf.decode", "linear_wf.evaluate", "report"):
            assert prefix + node in nodes, node
        assert not any(n.startswith(prefix + "betas_wf.betas_ses") or n == prefix + "betas_wf.subject_mask"
                       for n in nodes)
        assert workflow.get_node(prefix + "betas_wf.combine_runs").inputs.split_set is True
        session = workflow.get_node(prefix + "betas_wf.import_sesall")
        assert session.inputs.betas == config.workflow.glm.betas and session.inputs.subject == subject
    flat = workflow._create_flat_graph()
    rois = next(n for n in flat.nodes if n.fullname.endswith("sub_01_wf.rois_wf.rois"))
    import networkx as nx

    before = {n.fullname.rpartition("sub_01_wf.")[2] for n in nx.ancestors(flat, rois)}
    assert "betas_wf.combine_runs" in before  # voxels rated by the betas' reliability
    paths = list(_sinks(workflow).values())
    assert not any(p.name.endswith("_stat-effect_statmap.nii.gz") for p in paths)  # nothing estimated
    assert sum(p.name.endswith("_trials.tsv") for p in paths) == len(tiny_dataset.subjects)
    beta_text = participant_methods(config, imported["01"])[1]
    assert beta_text.startswith("Single-trial betas were not estimated here but imported: a GLMsingle output")
    assert str(source) in beta_text and "top" not in beta_text
    assert "the 40 voxels of highest noise-ceiling SNR" in participant_methods(config, imported["01"])[2]
    assert not Path(config.execution.work_dir).exists()
