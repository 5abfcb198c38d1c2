"""Tests of bids_recon.reports: figures are valid files, the HTML page is self-contained and escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from markupsafe import Markup
from PIL import Image

from bids_recon.reports import (
    Figure,
    Section,
    plot_cv_scores,
    plot_design_matrix,
    plot_metrics,
    plot_reconstruction_grid,
    plot_roi_overlay,
    render_report,
)

SHAPE = (20, 24, 20)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _svg_texts(path: Path) -> list[str]:
    """Parse an SVG (fails on invalid XML) and return the text of its labels.

    Matplotlib draws text as paths and keeps each string in an XML comment just before it.
    """
    root = ET.parse(path, parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))).getroot()
    assert root.tag.endswith("svg")
    return [el.text.strip() for el in root.iter() if el.tag is ET.Comment and el.text]


def _design(rng: np.random.Generator, n_trials: int = 60, n_scans: int = 100) -> pd.DataFrame:
    cols = {f"trial_{i:03d}": rng.random(n_scans) for i in range(n_trials)}
    cols.update({f"drift_{i}": np.linspace(-1, 1, n_scans) ** i for i in (1, 2)})
    cols.update({f"confound_{i}": rng.standard_normal(n_scans) for i in range(3)})
    cols["constant"] = np.ones(n_scans)
    return pd.DataFrame(cols)


@pytest.fixture()
def niftis(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    rng = np.random.default_rng(0)
    ref = tmp_path / "boldref.nii.gz"
    nib.save(nib.Nifti1Image(rng.random(SHAPE).astype(np.float32) * 100, AFFINE), ref)
    early = np.zeros(SHAPE, np.uint8)
    early[8:12, 2:6, 5:10] = 1  # 80 voxels
    higher = np.zeros(SHAPE, np.uint8)
    higher[4:9, 6:12, 6:12] = 1  # 180 voxels
    masks = {}
    for name, data in {"earlyvisual": early, "highervisual": higher}.items():
        masks[name] = tmp_path / f"{name}_mask.nii.gz"
        nib.save(nib.Nifti1Image(data, AFFINE), masks[name])
    return ref, masks


@pytest.fixture()
def metrics() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "metric": ["PixCorr", "PixCorr", "SSIM", "SSIM", "2-way identification", "2-way identification"],
            "value": [0.21, 0.3, 0.35, 0.4, 0.7, 0.853],
            "chance": [0.0, 0.0, np.nan, np.nan, 0.5, 0.5],
            "method": ["linear", "diffusion"] * 3,
            "kind": ["similarity"] * 4 + ["identification"] * 2,
            "ci_low": [0.15, 0.25, 0.3, 0.35, 0.65, 0.8],
            "ci_high": [0.25, 0.35, 0.4, 0.45, 0.75, 0.9],
        }
    )


# ------------------------------------------------------------------------------------------- figures
def test_design_matrix_labels_sparse_and_reproducible(tmp_path: Path) -> None:
    design = _design(np.random.default_rng(1))
    out = plot_design_matrix(design, tmp_path / "figs" / "design.svg", max_labels=20)
    assert out == tmp_path / "figs" / "design.svg" and out.stat().st_size > 0
    texts = _svg_texts(out)
    for name in ("drift_1", "drift_2", "confound_0", "confound_2", "constant"):
        assert name in texts
    n_trial_labels = sum(t.startswith("trial_") for t in texts)
    assert 1 <= n_trial_labels < 60
    assert any("100 scans" in t and "66 regressors" in t for t in texts)
    again = plot_design_matrix(design, tmp_path / "design2.svg", max_labels=20)
    assert again.read_bytes() == out.read_bytes()
    assert not list(tmp_path.glob("figs/.*"))  # no temporary file left behind
    few = _svg_texts(plot_design_matrix(design, tmp_path / "few.svg", max_labels=5))
    assert 1 <= sum(t in design.columns for t in few) <= 5


def test_design_matrix_few_columns_all_labelled(tmp_path: Path) -> None:
    design = _design(np.random.default_rng(2), n_trials=4, n_scans=30)
    texts = _svg_texts(plot_design_matrix(design, tmp_path / "design.svg"))
    assert all(c in texts for c in design.columns)


def test_design_matrix_rejects_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.svg"):
        plot_design_matrix(_design(np.random.default_rng(3)), tmp_path / "design.txt")


def test_roi_overlay(tmp_path: Path, niftis: tuple[Path, dict[str, Path]]) -> None:
    ref, masks = niftis
    out = plot_roi_overlay(ref, masks, tmp_path / "roi.svg")
    texts = _svg_texts(out)
    assert "earlyvisual (80 voxels)" in texts
    assert "highervisual (180 voxels)" in texts
    # slices span the ROIs (z 5..11), not the whole volume
    z_labels = sorted(int(t[2:]) for t in texts if re.fullmatch(r"z=\d+", t))
    assert z_labels[0] == 5 and z_labels[-1] == 11


def test_roi_overlay_rejects_mask_on_other_grid(tmp_path: Path, niftis: tuple[Path, dict[str, Path]]) -> None:
    ref, masks = niftis
    bad = tmp_path / "bad_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 12, 10), np.uint8), AFFINE), bad)
    with pytest.raises(ValueError, match="bad_mask.nii.gz"):
        plot_roi_overlay(ref, {**masks, "bad": bad}, tmp_path / "roi.svg")
    assert not (tmp_path / "roi.svg").exists()


def test_cv_scores_with_alphas(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(0.05, 0.1, 500)
    z[:3] = np.nan
    scores = {"z (early visual)": z, "c (higher visual)": rng.normal(0.1, 0.1, 800)}
    alphas = {"z (early visual)": 10.0 ** rng.integers(0, 5, 500), "c (higher visual)": np.full(800, 100.0)}
    texts = _svg_texts(plot_cv_scores(scores, tmp_path / "cv.svg", alphas=alphas))
    assert any(t.startswith("z (early visual) (n=497") and "3 NaN" in t for t in texts)
    assert any(t.startswith("c (higher visual) (n=800") for t in texts)
    assert "chance (0)" in texts
    assert "Regularisation per target" in texts
    texts = _svg_texts(plot_cv_scores(scores, tmp_path / "cv2.svg", chance=None, xlabel="Pearson r"))
    assert "Pearson r" in texts and "Regularisation per target" not in texts
    assert not any(t.startswith("chance") for t in texts)
    with pytest.raises(ValueError, match="empty"):
        plot_cv_scores({}, tmp_path / "cv3.svg")


def test_reconstruction_grid_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    seen = [rng.random((32, 32, 3)) for _ in range(5)]
    recon = {"linear": [(s * 255).astype(np.uint8) for s in seen]}
    labels = [f"stim{i}" for i in range(5)]
    wide = plot_reconstruction_grid(seen, recon, labels, tmp_path / "wide.png")
    with Image.open(wide) as im:
        im.verify()
    with Image.open(wide) as im:
        w_wide, h_wide = im.size
    assert w_wide > h_wide  # 5 stimuli side by side, 2 rows
    tall = plot_reconstruction_grid(
        seen[:2],
        {m: [rng.random((16, 16, 3)) for _ in range(2)] for m in ("a", "b", "c")},
        labels[:2],
        tmp_path / "tall.png",
    )
    with Image.open(tall) as im:
        w_tall, h_tall = im.size
    assert h_tall > w_tall  # 2 stimuli, 4 rows
    cut = plot_reconstruction_grid(seen, recon, labels, tmp_path / "cut.png", max_items=2)
    with Image.open(cut) as im:
        assert im.size[0] < w_wide
    with pytest.raises(ValueError, match="linear"):
        plot_reconstruction_grid(seen, {"linear": seen[:3]}, labels, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="labels"):
        plot_reconstruction_grid(seen, recon, labels[:2], tmp_path / "bad.png")


def test_contact_sheet_pages_thumbnails_of_files(tmp_path: Path) -> None:
    from bids_recon.reports.figures import write_contact_sheet

    rng = np.random.default_rng(2)
    seen = [rng.random((40, 40, 3)) for _ in range(12)]
    files = {}
    for method, shade in (("z only", 0), ("c only", 255)):
        files[method] = []
        for i in range(12):
            path = tmp_path / f"{method[0]}{i}.png"
            Image.fromarray(np.full((80, 80, 3), shade, np.uint8)).save(path)
            files[method].append(path)
    sheet = write_contact_sheet(seen, files, [f"s{i}" for i in range(12)], tmp_path / "page.jpg", thumb=16, columns=5)
    with Image.open(sheet) as im:
        assert im.format == "JPEG"
        width, height = im.size
        pixels = np.asarray(im.convert("L"), float)
    assert height == 3 * (12 + 3 * 16 + 6) and width == 48 + 5 * 18  # 3 rows of 5 stimuli, 3 thumbnails each
    # the first stimulus' column: its "z only" thumbnail is black, its "c only" thumbnail white
    assert pixels[12 + 16 + 4:12 + 32 - 4, 48 + 4:48 + 12].mean() < 30
    assert pixels[12 + 32 + 4:12 + 48 - 4, 48 + 4:48 + 12].mean() > 225
    with pytest.raises(ValueError, match="agree"):
        write_contact_sheet(seen, {"z only": files["z only"][:3]}, [f"s{i}" for i in range(12)], tmp_path / "x.jpg")


def test_metrics_percent_for_identification(tmp_path: Path, metrics: pd.DataFrame) -> None:
    texts = _svg_texts(plot_metrics(metrics, tmp_path / "metrics.svg"))
    assert {"PixCorr", "SSIM", "2-way identification", "% correct", "chance"} <= set(texts)
    assert "85.3" in texts  # identification fraction 0.853 drawn in %
    assert "0.21" in texts  # similarity drawn in its own unit
    assert not any("(n=" in t for t in texts)  # one participant: no group counts in the titles
    # without `kind` and CI columns the kind is inferred from the name
    plain = metrics.drop(columns=["kind", "ci_low", "ci_high"])
    assert "85.3" in _svg_texts(plot_metrics(plain, tmp_path / "plain.svg"))
    with pytest.raises(ValueError, match="chance"):
        plot_metrics(metrics.drop(columns="chance"), tmp_path / "bad.svg")


def test_group_metrics(tmp_path: Path, metrics: pd.DataFrame) -> None:
    rng = np.random.default_rng(6)
    group = pd.concat(
        [
            metrics.assign(participant_id=f"sub-0{i}", value=metrics["value"] + rng.normal(0, 0.02, len(metrics)))
            for i in (1, 2, 3)
        ],
        ignore_index=True,
    )
    texts = _svg_texts(plot_metrics(group, tmp_path / "group.svg"))  # a participant_id column: the group's figure
    assert {"PixCorr (n=3)", "SSIM (n=3)", "2-way identification (n=3)", "% correct"} <= set(texts)
    with pytest.raises(ValueError, match="chance"):
        plot_metrics(group.drop(columns="chance"), tmp_path / "bad.svg")


# ---------------------------------------------------------------------------------------------- HTML
class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img" and a.get("src"):
            self.srcs.append(a["src"])
        if a.get("id"):
            self.ids.append(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in {"link", "script"}:
            raise AssertionError(f"page loads an external/active resource: <{tag} {attrs}>")


def _parse(html: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(html)
    return parser


def test_render_report(tmp_path: Path, niftis: tuple[Path, dict[str, Path]], metrics: pd.DataFrame) -> None:
    figdir = tmp_path / "sub-01" / "figures"
    design_svg = plot_design_matrix(_design(np.random.default_rng(7)), figdir / "sub-01_design.svg")
    assert plot_roi_overlay(*niftis, figdir / "sub-01_rois.svg").is_file()
    metrics_svg = plot_metrics(metrics, figdir / "sub-01_metrics.svg")
    sections = [
        Section(
            "Single-trial betas",
            "One GLM per run.\n\nA <script>alert('x')</script> & more.",
            figures=[Figure(design_svg, "Design matrix of run 1.")],
        ),
        # a path relative to the HTML file's folder is accepted as is
        Section("Regions of interest", "", figures=[Figure(Path("sub-01/figures/sub-01_rois.svg"), "ROIs")]),
        Section(
            "Evaluation",
            Markup("<em>trusted</em> markup"),
            figures=[Figure(metrics_svg, "Metrics <b>caption</b>")],
            tables=[("Metric table", metrics), ("Weird", pd.DataFrame({"a<b>": ["<i>x</i>"]}))],
        ),
        Section("Evaluation", "same title twice"),
    ]
    out_html = tmp_path / "sub-01.html"
    result = render_report(
        "Participant <sub-01>",
        sections,
        out_html,
        summary={"Subject": "01", "Trials": "600", "Software": "bids_recon 0.1.0"},
        methods="Betas were estimated per run.\n\nDecoders were ridge regressions.",
        errors=["ValueError: <bad input>"],
    )
    assert result == out_html
    html = out_html.read_text(encoding="utf-8")
    page = _parse(html)

    for s in sections:
        assert f">{s.title}</h2>" in html
    for title in ("Summary", "Methods", "Errors"):
        assert f">{title}</h2>" in html
    assert "Participant &lt;sub-01&gt;" in html
    # figures: relative src resolving to the files, in the order given
    assert page.srcs == [
        "sub-01/figures/sub-01_design.svg",
        "sub-01/figures/sub-01_rois.svg",
        "sub-01/figures/sub-01_metrics.svg",
    ]
    for src in page.srcs:
        assert not Path(src).is_absolute() and "://" not in src
        assert (out_html.parent / unquote(src)).resolve().is_file()
    assert "Design matrix of run 1." in html and "Metrics &lt;b&gt;caption&lt;/b&gt;" in html
    # escaping: user text never becomes markup, trusted Markup does
    assert "<script>" not in html
    assert "A &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more." in html
    assert "<p>One GLM per run.</p>" in html
    assert "<em>trusted</em> markup" in html
    assert "&lt;i&gt;x&lt;/i&gt;" in html and "a&lt;b&gt;" in html
    # tables: summary + two data tables, floats formatted, no index
    assert page.tags.count("table") == 3
    assert "Metric table" in html and "0.853" in html and "2-way identification" in html
    assert '<th scope="row">Trials</th><td>600</td>' in html
    # navigation: every in-page link points to an existing, unique id
    assert len(page.ids) == len(set(page.ids))
    anchors = [link[1:] for link in page.links if link.startswith("#")]
    assert len(anchors) == len(sections) + 3
    assert set(anchors) <= set(page.ids)
    assert "ValueError: &lt;bad input&gt;" in html
    assert "Decoders were ridge regressions." in html
    # self-contained: inline CSS, nothing fetched from elsewhere
    assert "<style>" in html and "http://" not in html and "https://" not in html
    assert not list(tmp_path.glob(".sub-01.html*"))


def test_render_report_missing_figure_and_no_optional_sections(tmp_path: Path) -> None:
    out_html = tmp_path / "reports" / "group.html"
    render_report(
        "Group",
        [Section("Metrics", "text", figures=[Figure(tmp_path / "nope.svg", "absent")])],
        out_html,
    )
    html = out_html.read_text(encoding="utf-8")
    page = _parse(html)
    assert page.srcs == []  # no broken <img>
    assert "Figure not found" in html and "nope.svg" in html
    assert ">Errors</h2>" in html  # the missing figure is reported
    assert ">Summary</h2>" not in html and ">Methods</h2>" not in html

    clean = tmp_path / "clean.html"
    render_report("Clean", [Section("Only", "x")], clean)
    assert ">Errors</h2>" not in clean.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="html"):
        render_report("Bad", [], tmp_path / "report.txt")
