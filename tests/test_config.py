"""Settings: defaults, then the config file, then typed flags; every value validated before any work (exit 64)."""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, fields

import pytest

from bids_recon.cli.parser import build_parser
from bids_recon.cli.run import build_config, main
from bids_recon.config import Config
from bids_recon.errors import ExitCode, UsageError
from bids_recon.params import build, choices_of, locate, setting, validate


def _config(tmp_path, toml: str | None, *flags: str) -> Config:
    parser = build_parser()
    argv = [str(tmp_path / "ds"), str(tmp_path / "out"), "participant", *flags]
    if toml is not None:
        (tmp_path / "c.toml").write_text(toml)
        argv += ["--config-file", str(tmp_path / "c.toml")]
    return build_config(parser.parse_args(argv), parser)


def test_flags_win_even_at_their_default_value(tmp_path):
    toml = '[workflow.glm]\nestimator = "lsa"\n[workflow.generate.diffusion]\nsteps = 10\nstrength = 0.5\n'
    config = _config(tmp_path, toml, "--glm", "fithrf-denoise-rr", "--diffusion-steps", "50")
    assert config.workflow.glm.estimator == "fithrf-denoise-rr"  # typed, at the default value: still wins
    assert config.workflow.generate.diffusion.steps == 50
    assert config.workflow.generate.diffusion.strength == 0.5  # not typed: the file's value
    untyped = _config(tmp_path, toml)
    assert untyped.workflow.glm.estimator == "lsa" and untyped.workflow.generate.diffusion.steps == 10
    default = _config(tmp_path, None)
    assert default.workflow.glm.estimator == "fithrf-denoise-rr" and default.workflow.generate.diffusion.steps == 50


def test_dict_settings_merge_and_lists_replace(tmp_path):
    toml = ('[workflow.rois.user_masks]\nearlyvisual = "/a/v1.nii.gz"\n'
            '[execution]\nparticipant_label = ["01", "02"]\n')
    config = _config(tmp_path, toml, "--roi-mask", "highervisual=/b/v4.nii.gz:2", "--participant-label", "03")
    assert config.workflow.rois.user_masks == {"earlyvisual": "/a/v1.nii.gz", "highervisual": "/b/v4.nii.gz:2"}
    assert config.execution.participant_label == ["03"]


def test_saved_configuration_reproduces_the_run(tmp_path):
    config = _config(tmp_path, '[workflow.generate.linear]\nn_components = 9\n', "--res", "none", "--check-only",
                     "--nprocs", "3")
    config.save(tmp_path / "saved.toml")
    again = Config.load(tmp_path / "saved.toml")
    assert again.workflow.generate.linear.n_components == 9 and again.workflow.resolution is None
    assert again.nipype.nprocs == 3
    assert again.execution.check_only is False  # one invocation's choice, never read back from a file


#: (config file text, equivalent flags or None, the key the message must name, and a word it must contain)
BAD_VALUES = [
    ('[workflow.glm]\nestimator = "lsaa"\n', ["--glm", "lsaa"], "workflow.glm.estimator", "did you mean 'lsa'"),
    ('[workflow.generate]\ngenerator = "difusion"\n', ["--generator", "difusion"], "workflow.generate.generator",
     "did you mean 'diffusion'"),
    ('[workflow.glm]\nfraction_selection = "voxels"\n', None, "workflow.glm.fraction_selection",
     "did you mean 'voxel'"),
    ('[workflow.generate.diffusion]\nstrength = 1.5\n', ["--strength", "1.5"], "workflow.generate.diffusion.strength",
     "<= 1"),
    ('[workflow.generate.diffusion]\nsteps = 0\n', ["--diffusion-steps", "0"], "workflow.generate.diffusion.steps",
     ">= 1"),
    ('[workflow.decoding]\nalphas = [10.0, -1.0]\n', None, "workflow.decoding.alphas", "> 0"),
    ('[workflow.decoding]\ncv_folds = 1\n', None, "workflow.decoding.cv_folds", ">= 2"),
    ('[workflow.stimuli]\ntest_min_repeats = 1\n', ["--test-min-repeats", "1"], "workflow.stimuli.test_min_repeats",
     ">= 2"),
    ('[workflow.glm]\nhigh_pass_hz = "fast"\n', None, "workflow.glm.high_pass_hz", "expected a number"),
    ('[workflow.glm]\nzscore_per_session = "yes"\n', None, "workflow.glm.zscore_per_session", "true or false"),
    ('[nipype]\nnprocs = "two"\n', None, "nipype.nprocs", "expected an integer"),
    ('[workflow.glm]\nestimater = "lsa"\n', None, "workflow.glm.estimater", "did you mean 'workflow.glm.estimator'"),
    ('[workflow.glmm]\nestimator = "lsa"\n', None, "workflow.glmm", "did you mean 'workflow.glm'"),
    ('[execution]\ndevice = "gpu"\n', ["--device", "gpu"], "execution.device", "one of 'auto', 'cpu', 'cuda'"),
    ('[workflow.generate.diffusion]\nvariants = ["zc", "x"]\n', ["--variants", "zc", "x"],
     "workflow.generate.diffusion.variants", "one of 'z', 'c', 'zc'"),
    ('[workflow.stimuli]\ntest_split = "trial_type"\n', ["--test-split", "trial_type"], "workflow.stimuli.test_split",
     "COLUMN=VALUE"),
    ('[workflow.generate.linear]\nroi = "v9"\n', ["--decoder-roi", "v9"], "workflow.generate.linear.roi",
     "is not an ROI"),
    ('[workflow.generate.diffusion]\nn_samples = 2.5\n', ["--n-samples", "0"], "workflow.generate.diffusion.n_samples",
     ""),
    ('[workflow.decoding]\nroi = "earlyvisual"\n', None, "workflow.decoding.roi",
     "is now 'workflow.generate.linear.roi'"),
]


@pytest.mark.parametrize("toml, flags, key, words", BAD_VALUES, ids=[case[2] for case in BAD_VALUES])
def test_bad_value_exits_64_naming_key_and_source(tmp_path, capsys, toml, flags, key, words):
    bids = tmp_path / "ds"  # never read: settings are checked before anything else
    (tmp_path / "c.toml").write_text(toml)
    start = time.perf_counter()
    code = main([str(bids), str(tmp_path / "out"), "participant", "--config-file", str(tmp_path / "c.toml")])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    assert f"'{key}" in err and f"config file {tmp_path / 'c.toml'}" in err and words in err, err
    assert "Traceback" not in err and time.perf_counter() - start < 10
    if flags is not None:
        code = main([str(bids), str(tmp_path / "out"), "participant", *flags])
        err = capsys.readouterr().err
        assert code == ExitCode.USAGE, err
        assert f"'{key}" in err and f"the command line ({flags[0]})" in err, err


def test_flag_value_saved_in_the_run_toml(tiny_dataset, tmp_path, monkeypatch):
    """The issue's check: a file sets a value, the same key typed at its default wins in logs/<run>/bids_recon.toml."""
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tiny_dataset.templateflow_dir))
    (tmp_path / "c.toml").write_text('[workflow.glm]\nestimator = "lsa"\n[workflow.generate.linear]\nroi = '
                                     '"highervisual"\n')
    out = tmp_path / "out"
    code = main([str(tiny_dataset.bids_dir), str(out), "participant", "-d", f"fmriprep={tiny_dataset.fmriprep_dir}",
                 "-w", str(tmp_path / "work"), "--skip-bids-validation", "--check-only",
                 "--config-file", str(tmp_path / "c.toml"), "--glm", "fithrf-denoise-rr"])
    assert code == 0
    (log_dir,) = [p for p in (out / "logs").iterdir() if p.is_dir()]
    saved = tomllib.loads((log_dir / "bids_recon.toml").read_text())
    assert saved["workflow"]["glm"]["estimator"] == "fithrf-denoise-rr"
    assert saved["workflow"]["generate"]["linear"]["roi"] == "highervisual"


def test_every_setting_has_a_doc_and_every_choice_field_is_checked():
    """Each field of the tree says what it does; enum-like fields declare their allowed values."""
    def walk(cls, prefix):
        for field in fields(cls):
            key = f"{prefix}.{field.name}" if prefix else field.name
            found = locate(Config, key)
            if found is None:  # the generators' sections
                continue
            if found[0] == "table":
                yield from walk(found[1], key)
            elif cls.__name__ != "EnvironmentConfig":
                yield key, field

    keys = dict(walk(Config, ""))
    keys.update({f"workflow.generate.{name}.{f.name}": f for name, section in
                 Config().workflow.generate.sections.items() for f in fields(section)})
    assert "workflow.generate.diffusion.steps" in keys and "workflow.glm.estimator" in keys
    undocumented = [k for k, f in keys.items() if not f.metadata.get("doc")]
    assert not undocumented, undocumented
    for key in ("workflow.glm.estimator", "workflow.glm.fraction_selection", "workflow.generate.generator",
                "execution.device", "workflow.generate.diffusion.variants"):
        _, cls, name = locate(Config, key)
        assert choices_of(cls, name), key


def test_params_validate_values_set_in_code():
    @dataclass
    class Knobs:
        size: int = setting(4, ge=1, doc="a size")
        mode: str = setting("a", choices=("a", "b"), doc="a mode")
        scale: float | None = setting(None, gt=0, doc="a scale")

    assert build(Knobs, {"size": 3, "scale": 2}, "knobs").scale == 2.0  # ints are numbers
    bad = Knobs()
    bad.mode = "c"
    with pytest.raises(UsageError, match=r"'knobs\.mode' = 'c' \(from the default\): must be one of 'a', 'b'"):
        validate(bad, "knobs")
    with pytest.raises(UsageError, match="expected an integer"):
        build(Knobs, {"size": True}, "knobs")  # a bool is not an int
    with pytest.raises(UsageError, match="> 0"):
        build(Knobs, {"scale": -1.0}, "knobs", {"knobs.scale": "a test"})
