"""Assemble the participant report from the outputs of the workflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bids_recon.decoding import RidgeDecoder
from bids_recon.design.table import read_trials
from bids_recon.features import resolver_for
from bids_recon.features.params import StimulusParams
from bids_recon.generate.card import generator_card
from bids_recon.io import read_tsv
from bids_recon.naming import SubjectOutputs, parse_name
from bids_recon.reports.figures import (
    encoding_display,
    plot_cv_scores,
    plot_design_matrix,
    plot_encoding_maps,
    plot_encoding_rois,
    plot_glm_diagnostics,
    plot_map_mosaic,
    plot_metrics,
    plot_reconstruction_grid,
    plot_roi_overlay,
    write_contact_sheet,
)
from bids_recon.reports.html import Figure, Section, render_report
from bids_recon.reports.imported import imported_betas_section
from bids_recon.reports.metrics import (
    comparison_text,
    metric_label,
    networks_text,
    protocols_text,
    published_layout,
)

#: Test stimuli drawn in the report's reconstruction grid (every reconstruction is a file under ``recon/``).
RECONSTRUCTION_GRID_ITEMS = 30
#: Test stimuli per page of thumbnails (the section "All test stimuli"), and the thumbnails' size (px).
CONTACT_SHEET_ITEMS, CONTACT_SHEET_THUMB = 50, 64
#: Rows of the per-stimulus metrics table shown in the report (every row is in the reconstructions table).
ITEM_ROWS_SHOWN = 150


def contact_sheets_section(output_dir: Path, rows_by_method: dict[str, pd.DataFrame], resolver, fig_dir: Path,
                           prefix: str) -> Section:
    """Every test stimulus and its reconstructions as thumbnails, :data:`CONTACT_SHEET_ITEMS` per page (one JPEG
    each, loaded by the browser when scrolled to); the full-size images are the files under ``recon/``."""
    first = next(iter(rows_by_method.values()))
    ids = list(first["stimulus"])
    figures = []
    for start in range(0, len(ids), CONTACT_SHEET_ITEMS):
        page = ids[start:start + CONTACT_SHEET_ITEMS]
        seen = resolver.load_images(page, CONTACT_SHEET_THUMB)
        files = {m: [output_dir / f for f in rows["file"].iloc[start:start + CONTACT_SHEET_ITEMS]]
                 for m, rows in rows_by_method.items()}
        number = start // CONTACT_SHEET_ITEMS + 1
        sheet = write_contact_sheet(list(seen), files, [Path(s).stem for s in page],
                                    fig_dir / f"{prefix}_desc-reconstructions{number:03d}_thumbnails.jpg",
                                    thumb=CONTACT_SHEET_THUMB)
        figures.append(Figure(sheet, f"Test stimuli {start + 1}-{start + len(page)} of {len(ids)}: seen, then "
                                     f"{', '.join(rows_by_method)} (first sample)"))
    folder = Path(str(first["file"].iloc[0])).parent.as_posix() if len(first) else "recon"
    return Section(
        title="All test stimuli",
        text=(f"Thumbnails of all {len(ids)} test stimuli, {CONTACT_SHEET_ITEMS} per page; the full-size "
              f"reconstructions (every sample) are the PNG files in {folder}/, listed with their stimulus, variant "
              f"and sample in the *_reconstructions.tsv table there."),
        figures=figures,
    )


def _rows_by_method(index: pd.DataFrame, generator: str) -> dict[str, pd.DataFrame]:
    """Index rows of each figure row: the generator's, or (a generator with variants) each variant's first sample,
    labelled and ordered as its card says (``z only | c only | z + c``)."""
    if "variant" not in index.columns:
        return {generator: index}
    labels = generator_card(generator).variant_labels()
    first = index[index["sample"] == 0]
    order = [v for v in labels if v in set(first["variant"])]
    ids = list(first.loc[first["variant"] == order[0], "stimulus"])
    return {labels[v]: first[first["variant"] == v].set_index("stimulus").loc[ids].reset_index() for v in order}


def _beta_stage_maps(output_dir: Path, names: SubjectOutputs, trial_table: pd.DataFrame, fig_dir: Path,
                     prefix: str) -> tuple[list[Figure], list[tuple[str, pd.DataFrame]], str]:
    """Figures and tables of the beta stage's maps (HRF, R², fraction per session; noise ceiling)."""
    figures, rows, estimator = [], [], "n/a"
    mask = output_dir / names.brain_mask()
    for session in sorted(trial_table["session"].dropna().astype(str).unique()) or [None]:
        session = None if session in ("n/a", "nan") else session
        paths = {stat: output_dir / names.stat_map(session, stat) for stat in ("hrfindex", "rsquare", "fraction")}
        if not all(p.is_file() for p in paths.values()):
            continue
        info = json.loads(Path(str(paths["rsquare"]).replace(".nii.gz", ".json")).read_text())
        estimator = info.get("Estimator", estimator)
        rows.append({"session": session or "n/a", "estimator": estimator,
                     "noise components": info.get("NoiseComponents"),
                     "median fraction": info.get("MedianFraction"), "median R²": info.get("MedianRSquare"),
                     "cross-validated trials": info.get("CrossValidatedTrials"),
                     "unusable voxels (NaN, constant; betas 0)": info.get("UnusableVoxels"),
                     "note": " ".join(info.get("Warnings") or [info.get("CrossValidation", "")])})
        labels = {"hrfindex": "HRF index", "rsquare": "R²", "fraction": "ridge fraction"}
        figures.append(Figure(
            plot_map_mosaic({labels[k]: v for k, v in paths.items()}, mask,
                            fig_dir / f"{prefix}_ses-{session or 'none'}_desc-glmmaps_plot.png"),
            f"Session {session or 'n/a'}: chosen HRF (index into the library, higher = later peak), variance "
            "explained by the single-trial model, and ridge fraction per voxel"))
        if any(key in info for key in ("CVNoiseComponents", "CVFractions", "HRFIndexHistogram")):
            figures.append(Figure(
                plot_glm_diagnostics(info, fig_dir / f"{prefix}_ses-{session or 'none'}_desc-glmchoices_plot.svg"),
                f"Session {session or 'n/a'}: cross-validated R² of repeated trials (a held-out run's unregularised "
                "betas predicted from the other runs) over the number of noise components and the ridge fraction, "
                "with the values chosen, and the histogram of the HRFs chosen (warnings: the table's note)."))
    ceiling = {"NCSNR": output_dir / names.stat_map(None, "ncsnr"),
               "noise ceiling (%)": output_dir / names.stat_map(None, "noiseceiling")}
    tables = [("Estimation per session", pd.DataFrame(rows))] if rows else []
    if all(p.is_file() for p in ceiling.values()):
        figures.append(Figure(plot_map_mosaic(ceiling, mask, fig_dir / f"{prefix}_desc-noiseceiling_plot.png"),
                              "Noise ceiling from repeated stimuli: single-trial NCSNR and the noise ceiling of the "
                              "repeat averages"))
    return figures, tables, estimator


def confounds_sentence(output_dir: Path, names: SubjectOutputs, trial_table: pd.DataFrame) -> str:
    """What the GLM regressed out of the participant's runs, read from the session maps' sidecars (the GLM's own
    record, ``RunConfounds``), in the methods text's words; empty when the sidecars do not say (imported betas)."""
    from bids_recon.design.confounds import ConfoundChoice, describe_confounds

    choices, setting = [], None
    for session in sorted(trial_table["session"].dropna().astype(str).unique()) or [None]:
        session = None if session in ("n/a", "nan") else session
        info = _read_sidecar(Path(str(output_dir / names.stat_map(session, "rsquare")).replace(".nii.gz", ".json")))
        choices += [ConfoundChoice.from_json(run) for run in info.get("RunConfounds", [])]
        setting = info.get("ConfoundsSetting", setting)
    if not choices or setting is None:
        return ""
    return f" Confounds regressed out (--confounds {' '.join(setting) or 'none'}): " \
           f"{describe_confounds(choices, setting)}."


def _roi_row(name: str, info: dict) -> dict:
    """One row of the report's ROI table from the ROI's sidecar: the atlas and its labels, or the user's file(s)
    (a union of several when given so), their labels, and the voxels the brain mask left out."""
    files = info.get("Files") or []
    if info.get("Atlas") or not files:
        source, labels = info.get("Atlas") or "user mask", "; ".join(info.get("AtlasLabels", []))
    else:
        source = ("union of " if len(files) > 1 else "") + ", ".join(Path(str(f.get("Source", ""))).name
                                                                   for f in files)
        labels = "; ".join(str(f.get("Labels", "")) for f in files)
    return {"ROI": name, "voxels": info.get("Voxels"), "source": source, "labels": labels,
            "outside the brain mask (dropped)": info.get("VoxelsOutsideBrainMask", 0)}


def _resolver(bids_dir: Path, stimuli: StimulusParams | dict):
    from bids_recon.params import build

    return resolver_for(bids_dir, stimuli if isinstance(stimuli, StimulusParams) else
                        build(StimulusParams, stimuli, "workflow.stimuli"))


def _read_sidecar(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def metrics_section(table: pd.DataFrame, provenance: dict, item_table: pd.DataFrame, figure_path: Path,
                    item_source: str = "") -> Section:
    """The report's metrics: the published layout beside the published rows, every row, the not-computed lines.

    Parameters
    ----------
    table : pandas.DataFrame
        The metrics table (one row per metric and method, with ``status`` and ``note``).
    provenance : dict
        Its JSON sidecar (``NotComputedLines``, ``PublishedComparison``, ``Networks``, ``Selection``).
    item_table : pandas.DataFrame
        One row per test stimulus (and variant, sample); the page shows the first :data:`ITEM_ROWS_SHOWN`.
    figure_path : Path
        Where the figure goes.
    item_source : str
        The file that holds every row of ``item_table`` (named in the caption when rows are left out).
    """
    from bids_recon.evaluate.standard import not_computed_lines

    table = table.copy()
    if "status" not in table:  # a table written before the field's metrics were computed
        table["status"], table["note"] = "ok", ""
    if "label" not in table:
        table["label"] = table["metric"].map(metric_label)
    computed = table[(table["status"] == "ok") & np.isfinite(table["value"].astype(float))]
    paragraphs = [
        "The field's metrics are computed as MindEye's evaluation code does: images resized to 256 px, then PixCorr "
        "and SSIM, 2-way identification over all pairs (chance 50%) in AlexNet layer 2 and 5, InceptionV3 and "
        "CLIP ViT-L/14 space, EffNet-B and SwAV correlation distances (lower is better), image and brain retrieval "
        "where a decoder into CLIP space exists; bids_recon's own 2-way identification in pixel and decoded-feature "
        "space is added. The chance level of PixCorr, SSIM, the distances and the feature correlation is their "
        "mean over mismatched image pairs."]
    paragraphs += provenance.get("NotComputedLines") or not_computed_lines(table)
    selection = provenance.get("Selection") or {}
    if selection.get("Rule") not in (None, "single"):
        paragraphs.append(f"Variants with several samples per image: {selection.get('Description', '')}. Every "
                          "sample's values are in the per-stimulus table ('selected' marks the picks of a best-of-n "
                          "rule).")
    paragraphs.append(comparison_text(provenance.get("PublishedComparison")) + " " + protocols_text())
    paragraphs.append(networks_text(provenance))
    shown = table[["label", "method", "value", "chance", "sd", "samples", "selection", "status", "note"]
                  if "sd" in table else ["label", "method", "value", "chance", "status", "note"]]
    item_caption = "Per test stimulus"
    if len(item_table) > ITEM_ROWS_SHOWN:  # NSD: 982 x 11 rows would take a browser seconds to lay out
        item_caption += (f" (the first {ITEM_ROWS_SHOWN} of {len(item_table)} rows; all of them: "
                         f"{item_source or 'the reconstructions table'})")
    figures = []
    if not computed.empty:
        plot = computed.assign(metric=computed["label"].str.replace(" (", "\n(", regex=False))  # short lines
        figures.append(Figure(plot_metrics(plot, figure_path), "Computed metrics with their chance levels (dashed)"))
    return Section(
        title="Metrics",
        text="\n\n".join(p for p in paragraphs if p),
        figures=figures,
        tables=[("The published table's layout: this run's rows, then the published NSD averages of two tables "
                 "with different protocols (the Data column; – = not reported)", published_layout(table, provenance.get(
                     "PublishedComparison"))),
                ("Every metric", shown.rename(columns={"label": "metric"})),
                (item_caption, item_table.iloc[:ITEM_ROWS_SHOWN])],
    )


def transfer_section(decoders_from: Path, names: SubjectOutputs, generator: str, here: pd.DataFrame) -> Section:
    """Decoders trained in another run, tested here: that run's metrics on its own test set beside this run's
    (``--decoders-from``; e.g. trained on NSD's core experiment, tested on NSD-synthetic or NSD-Imagery)."""
    from bids_recon.naming import find_outputs

    found = [p for p, e in find_outputs(Path(decoders_from), "metrics", sub=names.subject)
             if p.name.endswith(f"_desc-{generator}_metrics.tsv")]
    keys = ["metric", "label", "method"]
    columns = {"value": f"tested here (task {names.task})", "chance": "chance here", "n": "test stimuli here"}
    table = here[[*keys, *columns]].rename(columns=columns)
    source = "its metrics table was not found"
    if found:
        there = read_tsv(found[0])
        task = parse_name(found[0])[0].get("task", "n/a")
        theirs = {"value": f"trained and tested on task {task}", "n": f"test stimuli (task {task})"}
        table = there[[*keys, *theirs]].rename(columns=theirs).merge(table, on=keys, how="outer")
        source = f"{found[0].name}"
    values = [c for c in table.columns if c.startswith(("tested here", "trained and tested"))]
    table = table[table[values].notna().any(axis=1)]  # metrics computed in neither run: not shown
    return Section(
        title="Decoders trained elsewhere",
        text=(f"The decoders were trained in {decoders_from.name} (its test set: {source}) and applied here without "
              "refitting: each metric on that run's own test stimuli beside the same metric on this run's stimuli "
              "(out of distribution where this run is another experiment)."),
        tables=[("Trained there, tested there and here", table)])


def encoding_section(output_dir: Path, names: SubjectOutputs, fig_dir: Path, prefix: str) -> Section | None:
    """The encoding models' section (the paper's encoding figure), or ``None`` when they did not run."""
    table_path = output_dir / names.encoding_summary()
    if not table_path.is_file():
        return None
    table = read_tsv(table_path)
    info = json.loads(table_path.with_suffix(".json").read_text())
    fdr = float(info.get("FDR") or 0.05)
    models = list(dict.fromkeys(table["model"].astype(str)))
    spaces = [m for m in models if "+" not in m]
    mask = output_dir / names.brain_mask()
    display = encoding_display(mask, names.space)
    where = (f"on nilearn's fsaverage5 surface (projected from {names.space})" if display == "surface"
             else "on axial slices of the BOLD grid (the brain mask in grey)")
    r_maps = {s: output_dir / names.encoding_map(s, "r") for s in spaces}
    q_maps = {s: output_dir / names.encoding_map(s, "q") for s in spaces}
    figures = [Figure(
        plot_encoding_maps(r_maps, mask, fig_dir / f"{prefix}_desc-encoding_map.png", significance=q_maps,
                           q_threshold=fdr, display=display),
        f"Test-set r of each feature space's encoding model, voxels with q < {fdr:g} (FDR), one colour scale, "
        f"{where}")]
    figures.append(Figure(plot_encoding_rois(table, fig_dir / f"{prefix}_desc-encodingrois_plot.svg"),
                          f"Mean r per ROI and model; labels: percentage of voxels with q < {fdr:g}"))
    unique = {f"unique {s}": output_dir / names.encoding_map(s, "uniquevariance") for s in spaces}
    unique = {k: v for k, v in unique.items() if v.is_file()}
    if unique:
        figures.append(Figure(
            plot_encoding_maps(unique, mask, fig_dir / f"{prefix}_desc-encodinguniquevariance_map.png",
                               display=display, cmap="viridis", colorbar_label="unique R²"),
            "Variance partitioning: held-out R² that only each feature space explains (joint model minus the model "
            f"without it), positive values, one colour scale, {where}"))
    descriptions = info.get("FeatureDescriptions", {})
    return Section(
        title="Encoding models",
        text=("Which voxels each stimulus feature space predicts (Takagi & Nishimoto 2023): a ridge model per voxel "
              f"trained on {info.get('TrainStimuli')} training stimuli, scored by Pearson r on "
              f"{info.get('TestStimuli')} held-out test stimuli (betas averaged over repeats); null: "
              f"{info.get('Null')}. Feature spaces: "
              + "; ".join(f"{s}: {descriptions.get(s, s)}" for s in spaces) + "."),
        figures=figures, tables=[("Encoding models per ROI", table)])


def build_participant_report(
    output_dir: Path,
    names: SubjectOutputs,
    bids_dir: Path,
    stimuli: StimulusParams | dict,
    first_run: tuple[str | None, str | None, str | None],
    boldref: Path | None,
    rois: dict[str, str | None],
    decoders: list[tuple[str, str]],
    generator: str,
    summary: dict[str, str],
    methods: str,
    zscored: bool = True,
    decoders_from: Path | None = None,
) -> Path:
    """Write ``sub-<label>.html`` and its figures from the participant's outputs; return the HTML path.

    Everything is read from the derivatives dataset (names from :class:`SubjectOutputs`), so the report
    can be rebuilt from the outputs alone (``--reports-only``).

    Parameters
    ----------
    first_run : tuple
        ``(session, run, task)`` whose design matrix is shown.
    rois : dict
        ROI name -> atlas name (``None`` for a user mask).
    decoders : list of tuple
        ``(roi, target)`` of each decoder.
    generator : str
        The generator whose outputs are shown; empty for ``--betas-only`` (the betas' section only).
    zscored : bool
        Whether the betas were z-scored per session (the text says so).
    decoders_from : Path, optional
        The earlier run whose decoders were applied (``--decoders-from``): its metrics on its own test set are shown
        beside this run's.
    """
    output_dir = Path(output_dir)
    out_html = output_dir / names.report()
    fig_dir = output_dir / names.figures_dir()
    fig_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"sub-{names.subject}_task-{names.task}"
    trial_table = read_trials(output_dir / names.trials())
    design = output_dir / names.design(*first_run)
    mask_file = output_dir / names.brain_mask()
    sessions = sorted(set(trial_table["session"].astype(str)))
    n_runs = len(trial_table.groupby(["session", "run"], dropna=False))

    beta_figures, beta_tables, glm_estimator = _beta_stage_maps(output_dir, names, trial_table, fig_dir, prefix)
    sections = []
    imported = imported_betas_section(output_dir, names, trial_table, beta_figures, beta_tables)  # --betas
    design_table = read_tsv(design) if imported is None else None
    grouping = ("within each session" if sessions != ["n/a"] else
                "over all runs (the dataset has no sessions: one group)")
    sections.append(
        imported or Section(
            title="Single-trial betas",
            text=(
                f"{len(trial_table)} trials in {n_runs} run(s) and "
                + (f"{len(sessions)} session(s)" if sessions != ["n/a"] else "no session level")
                + f", estimated session by session with the '{glm_estimator}' estimator (the canonical-HRF design of "
                "the first run is shown). "
                + (f"Betas are z-scored per voxel {grouping}" if zscored else
                   "Betas are in percent signal change (not z-scored)")
                + "; the noise ceiling is computed from repeated stimuli."
                + confounds_sentence(output_dir, names, trial_table)
            ),
            figures=[
                Figure(
                    plot_design_matrix(
                        design_table, fig_dir / f"{prefix}_desc-design_matrix.svg", title="Design matrix, first run"
                    ),
                    f"{design_table.shape[0]} volumes x {design_table.shape[1]} regressors",
                ),
                *beta_figures,
            ],
            tables=beta_tables,
        )
    )

    if not generator:  # --betas-only
        facts = {**summary, "Trials": str(len(trial_table)), "Runs": str(n_runs)}
        return render_report(f"bids_recon report: sub-{names.subject}", sections, out_html, summary=facts,
                             methods=methods)

    table_metrics = read_tsv(output_dir / names.metrics(generator))
    index = read_tsv(output_dir / names.recon_index(generator), dtype={"stimulus": str})
    roi_files = {name: output_dir / names.roi_mask(name, atlas) for name, atlas in rois.items()}
    roi_info = {
        name: json.loads(Path(str(path).replace(".nii.gz", ".json")).read_text()) for name, path in roi_files.items()
    }
    n_train = int((trial_table["split"] == "train").sum())
    n_test_stim = int(trial_table.loc[trial_table["split"] == "test", "stim_id"].nunique())
    roi_table = pd.DataFrame([_roi_row(name, info) for name, info in roi_info.items()])
    background = boldref if boldref is not None else mask_file
    sections.append(
        Section(
            title="Regions of interest",
            text="Visual ROIs in the BOLD grid, within the brain mask common to all runs.",
            figures=[
                Figure(
                    plot_roi_overlay(background, roi_files, fig_dir / f"{prefix}_desc-rois_overlay.svg"),
                    "ROIs over the BOLD reference",
                )
            ],
            tables=[("ROI sizes", roi_table)],
        )
    )

    scores, alphas, decoder_rows = {}, {}, []
    for roi, target in decoders:
        name = f"{roi} -> {target}"
        decoder = RidgeDecoder.load(output_dir / names.decoder(roi, target))
        scores[name], alphas[name] = decoder.cv_scores, decoder.alphas
        decoder_rows.append(
            {
                "decoder": name,
                "voxels": len(decoder.voxel_indices),
                "targets": decoder.weights.shape[1],
                "median CV R²": float(np.median(decoder.cv_scores)),
                "targets with CV R² > 0": int((decoder.cv_scores > 0).sum()),
            }
        )
    trained_elsewhere = (f"Not refitted: the ridge decoders of {decoders_from.name} (--decoders-from) were applied "
                         f"to this run's betas; scores are their cross-validated R² on that run's training trials. "
                         if decoders_from is not None else "")
    sections.append(
        Section(
            title="Decoders",
            text=trained_elsewhere or (
                f"Ridge decoders trained on {n_train} single training trials, alpha chosen per target by "
                f"cross-validation; scores are cross-validated R² on training trials."
            ),
            figures=[
                Figure(
                    plot_cv_scores(scores, fig_dir / f"{prefix}_desc-cvscores_plot.svg", alphas=alphas),
                    "Cross-validated R² per target, and the chosen alphas",
                )
            ],
            tables=[("Decoders", pd.DataFrame(decoder_rows))],
        )
    )

    # only the stimuli the grid draws are read (NSD: 982 test images x 3 variants would be 3.5 GB as float32)
    all_rows = _rows_by_method(index, generator)
    shown_rows = {m: rows.iloc[:RECONSTRUCTION_GRID_ITEMS] for m, rows in all_rows.items()}
    stim_ids = list(next(iter(shown_rows.values()))["stimulus"])
    shown = {m: [np.asarray(Image.open(output_dir / f).convert("RGB"), np.float32) / 255 for f in rows["file"]]
             for m, rows in shown_rows.items()}
    seen = _resolver(bids_dir, stimuli).load_images(stim_ids, shown[next(iter(shown))][0].shape[0])
    sections.append(
        Section(
            title="Reconstructions",
            text=(
                f"The {n_test_stim} test stimuli (seen) and their reconstructions from betas averaged over "
                f"their repeats."
            ),
            figures=[
                Figure(
                    plot_reconstruction_grid(
                        list(seen),
                        shown,
                        [Path(s).stem for s in stim_ids],
                        fig_dir / f"{prefix}_desc-reconstructions_grid.png",
                        max_items=RECONSTRUCTION_GRID_ITEMS,
                    ),
                    f"Seen (top) and reconstructed images (the first {len(stim_ids)} of {n_test_stim} test stimuli)",
                )
            ],
        )
    )

    sections.append(contact_sheets_section(output_dir, all_rows, _resolver(bids_dir, stimuli), fig_dir, prefix))

    sections.append(metrics_section(table_metrics, _read_sidecar(output_dir / names.metrics(generator, ".json")),
                                    index.drop(columns=["file"]), fig_dir / f"{prefix}_desc-metrics_plot.svg",
                                    item_source=names.recon_index(generator).as_posix()))

    if decoders_from is not None:
        sections.append(transfer_section(decoders_from, names, generator, table_metrics))

    encoding = encoding_section(output_dir, names, fig_dir, prefix)
    if encoding is not None:
        sections.append(encoding)

    facts = {
        **summary,
        "Trials": str(len(trial_table)),
        "Training trials": str(n_train),
        "Test stimuli": str(n_test_stim),
    }
    for row in table_metrics.itertuples():
        if row.metric == "identification_pixels":
            facts["2-way identification (pixels)"] = f"{100 * row.value:.1f}% (chance 50%)"
    return render_report(f"bids_recon report: sub-{names.subject}", sections, out_html, summary=facts, methods=methods)
