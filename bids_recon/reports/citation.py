"""Methods boilerplate: ``logs/<run>/CITATION.md`` and ``CITATION.bib`` describing what a run actually did.

The text is assembled from the ``__desc__`` (and ``__postdesc__``) paragraphs of the workflow that was built and
of every sub-workflow in it, as nipreps tools do; the references are chosen from the configuration (the
estimator, the ROI source, the generator) so that only what ran is cited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids_recon import __version__
from bids_recon.bids.derivatives import CITATION_FILES
from bids_recon.config import Config
from bids_recon.generate.card import generator_card
from bids_recon.glm.estimators import estimator_card
from bids_recon.io import atomic_write_text


@dataclass(frozen=True)
class Reference:
    """One bibliography entry and the condition under which a run cites it."""

    key: str
    text: str
    bibtex: str
    used: Callable[[Config], bool] = lambda config: True
    #: cited only when the configured generator's card lists the key (``GeneratorCard.references``)
    by_generator: bool = False
    #: cited only when the configured estimator's card lists the key (``EstimatorCard.references``)
    by_estimator: bool = False


def _atlas_used(config: Config) -> bool:
    rois = config.workflow.rois
    return any(name not in rois.user_masks for name in rois.labels)


def _encoding_used(config: Config) -> bool:
    return generator_card(config.workflow.generate.generator).encoding_enabled(config)


REFERENCES: list[Reference] = [
    Reference(
        "takagi2023", "Takagi Y, Nishimoto S (2023). High-resolution image reconstruction with latent diffusion models "
        "from human brain activity. CVPR 2023, 14453-14463. doi:10.1109/CVPR52729.2023.01389",
        "@inproceedings{takagi2023,\n  author = {Takagi, Yu and Nishimoto, Shinji},\n  title = {High-resolution image "
        "reconstruction with latent diffusion models from human brain activity},\n  booktitle = {Proceedings of the "
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},\n  pages = {14453--14463},\n"
        "  year = {2023},\n  doi = {10.1109/CVPR52729.2023.01389}\n}"),
    Reference(
        "gorgolewski2011", "Gorgolewski K, Burns CD, Madison C, Clark D, Halchenko YO, Waskom ML, Ghosh SS (2011). "
        "Nipype: a flexible, lightweight and extensible neuroimaging data processing framework in Python. Frontiers "
        "in Neuroinformatics 5:13. doi:10.3389/fninf.2011.00013",
        "@article{gorgolewski2011,\n  author = {Gorgolewski, Krzysztof and Burns, Christopher D. and Madison, Cindee "
        "and Clark, Dav and Halchenko, Yaroslav O. and Waskom, Michael L. and Ghosh, Satrajit S.},\n  title = {Nipype: "
        "a flexible, lightweight and extensible neuroimaging data processing framework in Python},\n  journal = "
        "{Frontiers in Neuroinformatics},\n  volume = {5},\n  pages = {13},\n  year = {2011},\n"
        "  doi = {10.3389/fninf.2011.00013}\n}"),
    Reference(
        "esteban2019", "Esteban O, Markiewicz CJ, Blair RW, et al. (2019). fMRIPrep: a robust preprocessing pipeline "
        "for functional MRI. Nature Methods 16:111-116. doi:10.1038/s41592-018-0235-4",
        "@article{esteban2019,\n  author = {Esteban, Oscar and Markiewicz, Christopher J. and Blair, Ross W. and "
        "others},\n  title = {{fMRIPrep}: a robust preprocessing pipeline for functional {MRI}},\n  journal = "
        "{Nature Methods},\n  volume = {16},\n  pages = {111--116},\n  year = {2019},\n"
        "  doi = {10.1038/s41592-018-0235-4}\n}"),
    Reference(
        "abraham2014", "Abraham A, Pedregosa F, Eickenberg M, et al. (2014). Machine learning for neuroimaging with "
        "scikit-learn. Frontiers in Neuroinformatics 8:14. doi:10.3389/fninf.2014.00014",
        "@article{abraham2014,\n  author = {Abraham, Alexandre and Pedregosa, Fabian and Eickenberg, Michael and "
        "others},\n  title = {Machine learning for neuroimaging with scikit-learn},\n  journal = {Frontiers in "
        "Neuroinformatics},\n  volume = {8},\n  pages = {14},\n  year = {2014},\n"
        "  doi = {10.3389/fninf.2014.00014}\n}"),
    Reference(
        "glover1999", "Glover GH (1999). Deconvolution of impulse response in event-related BOLD fMRI. NeuroImage "
        "9(4):416-429. doi:10.1006/nimg.1998.0419",
        "@article{glover1999,\n  author = {Glover, Gary H.},\n  title = {Deconvolution of impulse response in "
        "event-related {BOLD} {fMRI}},\n  journal = {NeuroImage},\n  volume = {9},\n  number = {4},\n"
        "  pages = {416--429},\n  year = {1999},\n  doi = {10.1006/nimg.1998.0419}\n}",
        by_estimator=True),
    Reference(
        "mumford2012", "Mumford JA, Turner BO, Ashby FG, Poldrack RA (2012). Deconvolving BOLD activation in "
        "event-related designs for multivoxel pattern classification analyses. NeuroImage 59(3):2636-2643. "
        "doi:10.1016/j.neuroimage.2011.08.076",
        "@article{mumford2012,\n  author = {Mumford, Jeanette A. and Turner, Benjamin O. and Ashby, F. Gregory and "
        "Poldrack, Russell A.},\n  title = {Deconvolving {BOLD} activation in event-related designs for multivoxel "
        "pattern classification analyses},\n  journal = {NeuroImage},\n  volume = {59},\n  number = {3},\n"
        "  pages = {2636--2643},\n  year = {2012},\n  doi = {10.1016/j.neuroimage.2011.08.076}\n}",
        by_estimator=True),
    Reference(
        "prince2022", "Prince JS, Charest I, Kurzawski JW, Pyles JA, Tarr MJ, Kay KN (2022). Improving the accuracy "
        "of single-trial fMRI response estimates using GLMsingle. eLife 11:e77599. doi:10.7554/eLife.77599",
        "@article{prince2022,\n  author = {Prince, Jacob S. and Charest, Ian and Kurzawski, Jan W. and Pyles, John A. "
        "and Tarr, Michael J. and Kay, Kendrick N.},\n  title = {Improving the accuracy of single-trial {fMRI} "
        "response estimates using {GLMsingle}},\n  journal = {eLife},\n  volume = {11},\n  pages = {e77599},\n"
        "  year = {2022},\n  doi = {10.7554/eLife.77599}\n}",
        by_estimator=True),
    Reference(
        "rokem2020", "Rokem A, Kay K (2020). Fractional ridge regression: a fast, interpretable reparameterization "
        "of ridge regression. GigaScience 9(12):giaa133. doi:10.1093/gigascience/giaa133",
        "@article{rokem2020,\n  author = {Rokem, Ariel and Kay, Kendrick},\n  title = {Fractional ridge regression: "
        "a fast, interpretable reparameterization of ridge regression},\n  journal = {GigaScience},\n  volume = {9},"
        "\n  number = {12},\n  pages = {giaa133},\n  year = {2020},\n  doi = {10.1093/gigascience/giaa133}\n}",
        by_estimator=True),
    Reference(
        "mackay1992", "MacKay DJC (1992). Bayesian interpolation. Neural Computation 4(3):415-447. "
        "doi:10.1162/neco.1992.4.3.415",
        "@article{mackay1992,\n  author = {MacKay, David J. C.},\n  title = {Bayesian interpolation},\n  journal = "
        "{Neural Computation},\n  volume = {4},\n  number = {3},\n  pages = {415--447},\n  year = {1992},\n"
        "  doi = {10.1162/neco.1992.4.3.415}\n}",
        by_estimator=True),
    Reference(
        "kay2013", "Kay KN, Rokem A, Winawer J, Dougherty RF, Wandell BA (2013). GLMdenoise: a fast, automated "
        "technique for denoising task-based fMRI data. Frontiers in Neuroscience 7:247. doi:10.3389/fnins.2013.00247",
        "@article{kay2013,\n  author = {Kay, Kendrick N. and Rokem, Ariel and Winawer, Jonathan and Dougherty, Robert "
        "F. and Wandell, Brian A.},\n  title = {{GLMdenoise}: a fast, automated technique for denoising task-based "
        "{fMRI} data},\n  journal = {Frontiers in Neuroscience},\n  volume = {7},\n  pages = {247},\n"
        "  year = {2013},\n  doi = {10.3389/fnins.2013.00247}\n}",
        by_estimator=True),
    Reference(
        "horn1965", "Horn JL (1965). A rationale and test for the number of factors in factor analysis. "
        "Psychometrika 30(2):179-185. doi:10.1007/BF02289447",
        "@article{horn1965,\n  author = {Horn, John L.},\n  title = {A rationale and test for the number of factors "
        "in factor analysis},\n  journal = {Psychometrika},\n  volume = {30},\n  number = {2},\n  pages = "
        "{179--185},\n  year = {1965},\n  doi = {10.1007/BF02289447}\n}",
        by_estimator=True),
    Reference(
        "ciric2022", "Ciric R, Thompson WH, Lorenz R, et al. (2022). TemplateFlow: FAIR-sharing of multi-scale, "
        "multi-species brain models. Nature Methods 19:1568-1571. doi:10.1038/s41592-022-01681-2",
        "@article{ciric2022,\n  author = {Ciric, Rastko and Thompson, William H. and Lorenz, Romy and others},\n"
        "  title = {{TemplateFlow}: {FAIR}-sharing of multi-scale, multi-species brain models},\n  journal = {Nature "
        "Methods},\n  volume = {19},\n  pages = {1568--1571},\n  year = {2022},\n"
        "  doi = {10.1038/s41592-022-01681-2}\n}",
        _atlas_used),
    Reference(
        "desikan2006", "Desikan RS, Segonne F, Fischl B, et al. (2006). An automated labeling system for subdividing "
        "the human cerebral cortex on MRI scans into gyral based regions of interest. NeuroImage 31(3):968-980. "
        "doi:10.1016/j.neuroimage.2006.01.021",
        "@article{desikan2006,\n  author = {Desikan, Rahul S. and S{\\'e}gonne, Florent and Fischl, Bruce and "
        "others},\n"
        "  title = {An automated labeling system for subdividing the human cerebral cortex on {MRI} scans into gyral "
        "based regions of interest},\n  journal = {NeuroImage},\n  volume = {31},\n  number = {3},\n"
        "  pages = {968--980},\n  year = {2006},\n  doi = {10.1016/j.neuroimage.2006.01.021}\n}",
        _atlas_used),
    Reference(
        "dupre2022", "Dupre la Tour T, Eickenberg M, Nunez-Elizalde AO, Gallant JL (2022). Feature-space selection "
        "with banded ridge regression. NeuroImage 264:119728. doi:10.1016/j.neuroimage.2022.119728",
        "@article{dupre2022,\n  author = {Dupr{\\'e} la Tour, Tom and Eickenberg, Michael and Nunez-Elizalde, Anwar O. "
        "and Gallant, Jack L.},\n  title = {Feature-space selection with banded ridge regression},\n  journal = "
        "{NeuroImage},\n  volume = {264},\n  pages = {119728},\n  year = {2022},\n"
        "  doi = {10.1016/j.neuroimage.2022.119728}\n}",
        lambda config: config.workflow.decoding.solver == "himalaya"),
    Reference(
        "golub1979", "Golub GH, Heath M, Wahba G (1979). Generalized cross-validation as a method for choosing a good "
        "ridge parameter. Technometrics 21(2):215-223. doi:10.1080/00401706.1979.10489751",
        "@article{golub1979,\n  author = {Golub, Gene H. and Heath, Michael and Wahba, Grace},\n  title = "
        "{Generalized cross-validation as a method for choosing a good ridge parameter},\n  journal = "
        "{Technometrics},\n  volume = {21},\n  number = {2},\n  pages = {215--223},\n  year = {1979},\n"
        "  doi = {10.1080/00401706.1979.10489751}\n}",
        lambda config: config.workflow.decoding.solver == "eigen" and config.workflow.decoding.cv == "gcv"),
    Reference(
        "benjamini1995", "Benjamini Y, Hochberg Y (1995). Controlling the false discovery rate: a practical and "
        "powerful approach to multiple testing. Journal of the Royal Statistical Society B 57(1):289-300. "
        "doi:10.1111/j.2517-6161.1995.tb02031.x",
        "@article{benjamini1995,\n  author = {Benjamini, Yoav and Hochberg, Yosef},\n  title = {Controlling the false "
        "discovery rate: a practical and powerful approach to multiple testing},\n  journal = {Journal of the Royal "
        "Statistical Society: Series B (Methodological)},\n  volume = {57},\n  number = {1},\n  pages = "
        "{289--300},\n  year = {1995},\n  doi = {10.1111/j.2517-6161.1995.tb02031.x}\n}",
        _encoding_used),
    Reference(
        "rombach2022", "Rombach R, Blattmann A, Lorenz D, Esser P, Ommer B (2022). High-resolution image synthesis "
        "with latent diffusion models. CVPR 2022, 10684-10695. doi:10.1109/CVPR52688.2022.01042",
        "@inproceedings{rombach2022,\n  author = {Rombach, Robin and Blattmann, Andreas and Lorenz, Dominik and Esser, "
        "Patrick and Ommer, Bj{\\\"o}rn},\n  title = {High-resolution image synthesis with latent diffusion models},\n"
        "  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},\n"
        "  pages = {10684--10695},\n  year = {2022},\n  doi = {10.1109/CVPR52688.2022.01042}\n}",
        by_generator=True),
    Reference(
        "dado2022", "Dado T, Güçlütürk Y, Ambrogioni L, Ras G, Bosch S, van Gerven M, Güçlü U (2022). Hyperrealistic "
        "neural decoding for reconstructing faces from fMRI activations via the GAN latent space. Scientific Reports "
        "12:141. doi:10.1038/s41598-021-03938-w",
        "@article{dado2022,\n  author = {Dado, Thirza and G{\\\"u}{\\c{c}}l{\\\"u}t{\\\"u}rk, Ya{\\u{g}}mur and "
        "Ambrogioni, Luca and Ras, Gabri{\\\"e}lle and Bosch, Sander and van Gerven, Marcel and "
        "G{\\\"u}{\\c{c}}l{\\\"u}, Umut},\n  title = {Hyperrealistic neural decoding for reconstructing faces from "
        "{fMRI} activations via the {GAN} latent space},\n  journal = {Scientific Reports},\n  volume = {12},\n"
        "  pages = {141},\n  year = {2022},\n  doi = {10.1038/s41598-021-03938-w}\n}",
        by_generator=True),
    Reference(
        "wang2004", "Wang Z, Bovik AC, Sheikh HR, Simoncelli EP (2004). Image quality assessment: from error "
        "visibility to structural similarity. IEEE Transactions on Image Processing 13(4):600-612. "
        "doi:10.1109/TIP.2003.819861",
        "@article{wang2004,\n  author = {Wang, Zhou and Bovik, Alan C. and Sheikh, Hamid R. and Simoncelli, Eero P.},\n"
        "  title = {Image quality assessment: from error visibility to structural similarity},\n  journal = {IEEE "
        "Transactions on Image Processing},\n  volume = {13},\n  number = {4},\n  pages = {600--612},\n"
        "  year = {2004},\n"
        "  doi = {10.1109/TIP.2003.819861}\n}"),
    Reference(
        "ozcelik2023", "Ozcelik F, VanRullen R (2023). Natural scene reconstruction from fMRI signals using generative "
        "latent diffusion. Scientific Reports 13:15666. doi:10.1038/s41598-023-42891-8",
        "@article{ozcelik2023,\n  author = {Ozcelik, Furkan and VanRullen, Rufin},\n  title = {Natural scene "
        "reconstruction from {fMRI} signals using generative latent diffusion},\n  journal = {Scientific Reports},\n"
        "  volume = {13},\n  pages = {15666},\n  year = {2023},\n  doi = {10.1038/s41598-023-42891-8}\n}"),
]


def workflow_descriptions(workflow: Any) -> list[tuple[str, str]]:
    """``(name, paragraph)`` of the workflow and every sub-workflow, depth first, in the order they were added.

    Parameters
    ----------
    workflow : nipype.pipeline.engine.Workflow
        The built workflow; paragraphs come from each workflow's ``__desc__`` and ``__postdesc__``.
    """
    found: list[tuple[str, str]] = []

    def visit(wf: Any) -> None:
        text = " ".join(str(t).strip() for t in (getattr(wf, "__desc__", None), getattr(wf, "__postdesc__", None))
                        if t)
        if text:
            found.append((wf.name, text))
        graph = getattr(wf, "_graph", None)
        for node in list(graph.nodes()) if graph is not None else []:
            if hasattr(node, "_graph"):
                visit(node)

    visit(workflow)
    return found


def cited(config: Config) -> list[Reference]:
    """The references of the stages this configuration runs."""
    by_generator = set(generator_card(config.workflow.generate.generator).references)
    by_estimator = set(estimator_card(config.workflow.glm.estimator).references(config.workflow.glm))
    found = [ref for ref in REFERENCES if ref.used(config) and (not ref.by_generator or ref.key in by_generator)
             and (not ref.by_estimator or ref.key in by_estimator)]
    if config.workflow.betas_only:  # the betas only: no reconstruction, atlas, decoder or encoding model ran
        return [ref for ref in found if ref.key in BETAS_ONLY_KEYS or ref.by_estimator]
    return found


#: References of a ``--betas-only`` run besides the estimator's own: nipype, fMRIPrep, nilearn.
BETAS_ONLY_KEYS = ("gorgolewski2011", "esteban2019", "abraham2014")


def participant_methods_texts(workflow: Any) -> list[tuple[str, str]]:
    """``(participant workflow name, methods text)``: each participant's part paragraphs joined in order.

    ``workflow`` is the top-level workflow (one sub-workflow per participant) or one participant's workflow.
    """
    graph = getattr(workflow, "_graph", None)
    children = [node for node in (graph.nodes() if graph is not None else []) if hasattr(node, "_graph")]
    parts = children if not getattr(workflow, "__desc__", None) and children else [workflow]
    return [(part.name, " ".join(text for _, text in workflow_descriptions(part))) for part in parts]


def citation_markdown(workflow: Any, config: Config) -> str:
    """The methods text of the run (participants with identical text merged) followed by its references."""
    paragraphs: dict[str, list[str]] = {}
    for name, text in participant_methods_texts(workflow):
        paragraphs.setdefault(text, []).append(name)
    lines = ["# Methods", "",
             f"*Boilerplate written by bids_recon {__version__} for run `{config.execution.run_id}`; it describes "
             "what this run did. Copy it into your methods section, citing the references below.*", ""]
    for text, names in paragraphs.items():
        if len(paragraphs) > 1:
            participants = ", ".join(n.removesuffix("_wf").replace("sub_", "sub-") for n in names)
            lines += [f"## {participants}", ""]
        lines += [text, ""]
    lines += ["## References", ""]
    lines += [f"- [{ref.key}] {ref.text}" for ref in cited(config)]
    return "\n".join(lines) + "\n"


def citation_bibtex(config: Config) -> str:
    """The BibTeX entries of :func:`cited`."""
    return "\n\n".join(ref.bibtex for ref in cited(config)) + "\n"


def write_citation(workflow: Any, config: Config, log_dir: Path) -> tuple[Path, Path]:
    """Write :data:`~bids_recon.bids.derivatives.CITATION_FILES` into ``log_dir`` (atomically); return their paths."""
    log_dir = Path(log_dir)
    md = atomic_write_text(log_dir / CITATION_FILES[0], citation_markdown(workflow, config))
    bib = atomic_write_text(log_dir / CITATION_FILES[1], citation_bibtex(config))
    return md, bib
