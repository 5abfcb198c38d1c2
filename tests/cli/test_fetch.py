"""bids_recon-fetch: resumable, verified downloads into one cache folder; offline it fails at once (exit 69)."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from bids_recon import download, offline
from bids_recon.cli import fetch
from bids_recon.download import ChecksumError, FetchItem, Layout, download_url, verify
from bids_recon.errors import ExitCode, ServiceUnavailableError
from bids_recon.rois import templates
from tests import ROOT
from tests.conftest import no_network_env

PAYLOAD = hashlib.sha256(b"seed").digest() * 40_000  # 1.28 MB of fixed bytes


class _Server(http.server.ThreadingHTTPServer):
    """Serves ``files`` (path -> bytes) with HEAD, Range (206) and an MD5 ETag; records every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str, str | None, int]] = []  # method, path, Range header, status
        self.ignore_range = False
        self.cut_after: int | None = None  # close the connection after this many body bytes

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def _reply(self, body: bool) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        data = server.files.get(self.path.split("?")[0])
        wanted = self.headers.get("Range")
        if data is None:
            server.log.append((self.command, self.path, wanted, 404))
            self.send_error(404)
            return
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
        if match and not server.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                server.log.append((self.command, self.path, wanted, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            status = 206
        server.log.append((self.command, self.path, wanted, status))
        self.send_response(status)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("ETag", '"' + hashlib.md5(data).hexdigest() + '"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if body:
            chunk = data[start:] if server.cut_after is None else data[start:start + server.cut_after]
            self.wfile.write(chunk)

    def do_GET(self):  # noqa: N802 (http.server API)
        self._reply(body=True)

    def do_HEAD(self):  # noqa: N802
        self._reply(body=False)


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _item(server: _Server, dest: Path, **kwargs) -> FetchItem:
    server.files["/weights/model-" + hashlib.sha256(PAYLOAD).hexdigest()[:8] + ".pth"] = PAYLOAD
    path = next(iter(server.files))
    return FetchItem("metrics", dest, "url", server.url + path, size=len(PAYLOAD), size_source="HEAD", **kwargs)


def test_partial_download_resumes_with_a_range_request(server, tmp_path):
    dest = tmp_path / "checkpoints" / "model.pth"
    item = _item(server, dest, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    dest.parent.mkdir(parents=True)
    (dest.parent / "model.pth.part").write_bytes(PAYLOAD[:300_000])  # an earlier, interrupted run
    lines: list[str] = []
    digests = download_url(item, report=lines.append)
    assert dest.read_bytes() == PAYLOAD and digests["sha256"] == item.sha256
    assert not (dest.parent / "model.pth.part").exists()
    assert server.log == [("GET", item.url.removeprefix(server.url), "bytes=300000-", 206)]
    assert any("resuming" in line for line in lines)
    # a second run finds the verified file and asks nothing
    download_url(item, report=lines.append)
    assert len(server.log) == 1 and "present" in lines[-1]


def test_interrupted_download_keeps_the_part_file_then_resumes(server, tmp_path):
    dest = tmp_path / "model.pth"
    item = _item(server, dest, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    server.cut_after = 500_000  # the connection drops mid-file
    with pytest.raises(ServiceUnavailableError, match="resume") as info:
        download_url(item, report=lambda _: None)
    assert info.value.exit_code == ExitCode.UNAVAILABLE
    part = tmp_path / "model.pth.part"
    assert part.stat().st_size == 500_000 and not dest.exists()
    server.cut_after = None
    download_url(item, report=lambda _: None)
    assert dest.read_bytes() == PAYLOAD
    assert server.log[-1][2] == "bytes=500000-" and server.log[-1][3] == 206


def test_server_that_ignores_range_sends_the_whole_file_again(server, tmp_path):
    dest = tmp_path / "model.pth"
    item = _item(server, dest)
    (tmp_path / "model.pth.part").write_bytes(b"x" * 1000)  # garbage: must not end up in the file
    server.ignore_range = True
    download_url(item, report=lambda _: None)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_not_downloaded_again(server, tmp_path):
    dest = tmp_path / "model.pth"
    item = _item(server, dest)
    (tmp_path / "model.pth.part").write_bytes(PAYLOAD)
    download_url(item, report=lambda _: None)
    assert dest.read_bytes() == PAYLOAD and server.log[-1][3] == 416


@pytest.mark.parametrize("check", [{"sha256": "0" * 64}, {"sha256_prefix": "deadbeef"}, {"md5": "0" * 32}])
def test_checksum_mismatch_is_refused_and_deleted(server, tmp_path, check):
    dest = tmp_path / "model.pth"
    item = _item(server, dest, **check)
    with pytest.raises(ChecksumError, match="expected") as info:
        download_url(item, report=lambda _: None)
    assert info.value.exit_code == ExitCode.BAD_DATA
    assert not dest.exists() and not (tmp_path / "model.pth.part").exists()


def test_torchvision_hash_prefix_and_size_are_checked(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    item = FetchItem("metrics", path, "url", "", size=3, sha256_prefix=digest[:8])
    assert verify(path, item)["sha256"] == digest
    with pytest.raises(ChecksumError, match="3 bytes, expected 4"):
        verify(path, FetchItem("metrics", path, "url", "", size=4, size_source="HEAD"))
    # torchvision's own table gives approximate sizes: they are shown, never enforced
    verify(path, FetchItem("metrics", path, "url", "", size=4, approx=True, sha256_prefix=digest[:8]))


def test_plan_lists_torchvision_files_from_the_installed_enums(tmp_path):
    from torchvision.models import AlexNet_Weights, EfficientNet_B1_Weights, Inception_V3_Weights

    items = offline.build_plan(tmp_path, ["metrics"], "all")
    names = {i.dest.name for i in items if i.kind == "url"}
    for weights in (AlexNet_Weights.IMAGENET1K_V1, Inception_V3_Weights.IMAGENET1K_V1,
                    EfficientNet_B1_Weights.IMAGENET1K_V2):
        assert weights.url.rsplit("/", 1)[-1] in names
    assert "swav_800ep_pretrain.pth.tar" in names
    alex = next(i for i in items if i.dest.name.startswith("alexnet"))
    assert alex.dest.parent == tmp_path / "torch/hub/checkpoints" and alex.sha256_prefix == "7be5be79"
    assert alex.approx and abs(alex.size / 2**20 - AlexNet_Weights.IMAGENET1K_V1.meta["_file_size"]) < 0.01
    assert {(i.repo_id, i.filename) for i in items if i.kind == "hf"} == {
        ("openai/clip-vit-large-patch14", "config.json"), ("openai/clip-vit-large-patch14", "model.safetensors")}
    # only the networks of the chosen metrics
    only_pixels = offline.build_plan(tmp_path, ["metrics"], "pixcorr,ssim,alexnet5")
    assert [i.dest.name for i in only_pixels] == [alex.dest.name]


def test_template_files_match_the_roi_settings(tmp_path):
    skeleton, *items = offline.build_plan(tmp_path, ["templates"])
    assert skeleton.kind == "unpack" and skeleton.dest == tmp_path / "templateflow"
    rel = [i.dest.relative_to(tmp_path / "templateflow").as_posix() for i in items]
    assert rel == ["tpl-MNI152NLin2009cAsym/tpl-MNI152NLin2009cAsym_res-02_atlas-HOCPA_desc-th25_dseg.nii.gz",
                   "tpl-MNI152NLin6Asym/tpl-MNI152NLin6Asym_atlas-HOCPA_dseg.tsv",
                   "tpl-MNI152NLin2009cAsym/tpl-MNI152NLin2009cAsym_res-02_desc-brain_mask.nii.gz"]
    assert [i.kind for i in items] == ["url", "copy", "url"]
    assert items[0].url == f"{templates.TEMPLATEFLOW_S3}/{rel[0]}"
    entry = download.fetch_item(items[1], Layout(tmp_path), report=lambda _: None)
    with zipfile.ZipFile(templates.templateflow_skeleton()) as archive:
        assert items[1].dest.read_bytes() == archive.read(rel[1])
    assert entry["sha256"] == hashlib.sha256(items[1].dest.read_bytes()).hexdigest()


def _fake_listing(files):
    def listing(repo_id, repo_type, timeout):
        return [{"filename": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "git_sha1": ""}
                for name, data in files.items()]
    return listing


def test_hub_patterns_expand_to_the_model_files(tmp_path):
    repo = {name: b"x" for name in ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                                     "unet/diffusion_pytorch_model.bin", "safety_checker/model.safetensors",
                                     "tokenizer/vocab.json", "tokenizer/merges.txt", "vae/config.json"]}
    from bids_recon.generate.diffusion import DiffusionParams

    plan = offline.build_plan(tmp_path, ["diffusion"], generators={"diffusion": DiffusionParams()})
    items = download.resolve(plan, hf_listing=_fake_listing(repo))
    assert sorted(i.filename for i in items) == ["model_index.json", "tokenizer/merges.txt", "tokenizer/vocab.json",
                                                "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                                                "vae/config.json"]
    assert all(i.size == 1 and len(i.sha256) == 64 for i in items)
    # CLIP: the weights fall back to pytorch_model.bin in a repository without safetensors
    clip = download.resolve([i for i in offline.build_plan(tmp_path, ["metrics"], "clip") if i.kind == "hf"],
                            hf_listing=_fake_listing({"config.json": b"{}", "pytorch_model.bin": b"w"}))
    assert [i.filename for i in clip] == ["config.json", "pytorch_model.bin"]


def test_hub_file_with_a_wrong_checksum_is_deleted(tmp_path):
    item = FetchItem("metrics", tmp_path, "hf", "", 5, "hub API", sha256=hashlib.sha256(b"right").hexdigest(),
                     repo_id="org/name", filename="model.safetensors")
    blob = tmp_path / "huggingface/hub/models--org--name/blobs/abc"
    link = tmp_path / "huggingface/hub/models--org--name/snapshots/0/model.safetensors"

    def hub_file(data):
        def hf_download(item, cache, timeout):
            blob.parent.mkdir(parents=True, exist_ok=True)
            link.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link.unlink(missing_ok=True)
            link.symlink_to(blob)
            return link
        return hf_download

    entry = download.fetch_item(item, Layout(tmp_path), report=lambda _: None, hf_download=hub_file(b"right"))
    assert entry["file"].endswith("snapshots/0/model.safetensors") and entry["verified"].startswith("sha256")
    with pytest.raises(ChecksumError):
        download.fetch_item(item, Layout(tmp_path), report=lambda _: None, hf_download=hub_file(b"wrong"))
    assert not blob.exists() and not link.exists()


def test_templates_fetched_from_a_server_and_environment_written(server, tmp_path, monkeypatch, capsys):
    """The whole command on the template group, against a local server standing in for TemplateFlow's S3."""
    items = offline.build_plan(tmp_path, ["templates"])
    for item in items:
        if item.kind == "url":
            server.files["/" + item.url.removeprefix(templates.TEMPLATEFLOW_S3 + "/")] = \
                b"nifti:" + item.dest.name.encode()
    monkeypatch.setattr(templates, "TEMPLATEFLOW_S3", server.url)
    monkeypatch.setattr(download, "MD5_ETAG_HOSTS", ("127.0.0.1",))  # the local server's ETags are MD5s, as S3's
    folder = tmp_path / "cache"
    assert fetch.main([str(folder), "--include", "templates", "--mount-point", "/cache"]) == 0
    out = capsys.readouterr().out
    total = sum(len(data) for data in server.files.values())
    assert f"total to download: {total} B" in out and "md5" in out  # sizes (HEAD) and S3 ETags listed first
    tf = folder / "templateflow/tpl-MNI152NLin2009cAsym"
    assert (tf / "tpl-MNI152NLin2009cAsym_res-02_desc-brain_mask.nii.gz").read_bytes().startswith(b"nifti:")
    assert (tf / "template_description.json").stat().st_size > 0  # the skeleton, as templateflow unpacks it
    assert (tf / "tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz").stat().st_size == 0  # placeholders stay empty
    env = (folder / "bids_recon-env.sh").read_text()
    assert "export TEMPLATEFLOW_HOME=/cache/templateflow" in env and "export TORCH_HOME=/cache/torch" in env
    assert "HF_HOME=/cache/huggingface\n" in (folder / "bids_recon.env").read_text()
    manifest = (folder / "bids_recon-fetch.json").read_text()
    assert manifest.count('"sha256": "') == 4  # skeleton (empty), label table, atlas, mask
    heads = [entry for entry in server.log if entry[0] == "HEAD"]
    assert len(heads) >= 2  # the probe and the sizes
    # templateflow itself, offline, finds the files where bids_recon's ROI stage asks for them
    code = ("from bids_recon.rois.templates import missing_templates, required_templates; "
            "print(missing_templates(required_templates()))")
    env = no_network_env(tmp_path / "sandbox", TEMPLATEFLOW_HOME=str(folder / "templateflow"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_environment_file_points_the_caches_at_the_folder(tmp_path):
    layout = Layout(tmp_path / "cache")
    sh, _ = offline.write_environment(layout)
    code = ("import torch; from bids_recon.evaluate.networks import hf_hub_cache_dir; "
            "print(torch.hub.get_dir()); print(hf_hub_cache_dir())")
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "HF_HOME", "HF_HUB_CACHE")}
    proc = subprocess.run(["bash", "-c", f". {sh} && {sys.executable} -c '{code}'"], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT)}, check=True)
    assert proc.stdout.split() == [str(layout.checkpoints.parent), str(layout.hf_hub_cache)]


def test_offline_dry_run_lists_and_real_run_stops_with_69(tmp_path):
    env = no_network_env(tmp_path / "sandbox")
    cmd = [sys.executable, "-m", "bids_recon.cli.fetch", str(tmp_path / "cache")]
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "OFFLINE" in dry.stdout and "unknown (offline)" in dry.stdout
    assert "alexnet-owt-7be5be79.pth" in dry.stdout and "~233.1 MiB" in dry.stdout
    assert "tpl-MNI152NLin2009cAsym_res-02_atlas-HOCPA_desc-th25_dseg.nii.gz" in dry.stdout
    assert "CompVis--stable-diffusion-v1-4/unet/*.safetensors" in dry.stdout
    start = time.monotonic()
    real = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert real.returncode == 69 and "no network" in real.stderr, real.stderr
    assert time.monotonic() - start < 30
    assert not (tmp_path / "cache").exists()


def test_missing_config_is_exit_66_and_bad_group_64(tmp_path, capsys):
    assert fetch.main([str(tmp_path), "--config", str(tmp_path / "nope.toml"), "--dry-run"]) == 66
    assert fetch.main([str(tmp_path), "--include", "everything", "--dry-run"]) == 64
    assert "choose from" in capsys.readouterr().err


def test_documented_options_exist():
    """Every option on a ``bids_recon-fetch`` command line in docs/offline.md is one the parser knows."""
    parser_options = {o for a in fetch.build_parser()._actions for o in a.option_strings}
    lines = [line for line in (ROOT / "docs/offline.md").read_text().splitlines() if "bids_recon-fetch " in line]
    documented = {o for line in lines for o in re.findall(r"(--[a-z][a-z-]+)", line)}
    assert documented and documented <= parser_options, documented - parser_options


def test_config_decides_the_model_and_rois(tmp_path, capsys, monkeypatch):
    from bids_recon.config import Config

    monkeypatch.setattr(offline, "probe", lambda urls, timeout: (False, "offline in this test"))
    config = Config()
    config.workflow.generate.generator = "diffusion"
    config.workflow.generate.diffusion.model = "someone/other-sd"
    path = config.save(tmp_path / "run.toml")
    assert fetch.main([str(tmp_path / "cache"), "--config", str(path), "--include", "diffusion", "--dry-run"]) == 0
    assert "models--someone--other-sd/unet/*.safetensors" in capsys.readouterr().out
    config.workflow.generate.generator = "linear"  # no diffusion model needed
    path = config.save(tmp_path / "run.toml")
    assert fetch.main([str(tmp_path / "cache"), "--config", str(path), "--include", "diffusion", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "does not use the diffusion generator" in out and "0 file(s)" in out
