# syntax=docker/dockerfile:1.7
# bids_recon BIDS-App image: Python 3.11 + torch + bids_recon installed with pinned versions, on one of two bases.
#
#   CUDA (default): the CUDA 13.0 runtime, Python 3.11 installed by uv, torch's CUDA 13.0 wheels
#   docker build -t bidsrecon/bids_recon:0.1.0 .
#   docker run --rm --gpus all -v /data/ds:/data:ro -v /data/out:/out bidsrecon/bids_recon:0.1.0 \
#       /data /out participant -d fmriprep=/data/derivatives/fmriprep
#
#   CPU: a plain Debian bookworm base (its python3 is 3.11), torch's CPU wheels (torch 2.14.1+cpu, no CUDA libraries)
#   docker build --build-arg BASE=cpu --build-arg BASE_IMAGE=debian:bookworm \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t bidsrecon/bids_recon:0.1.0-cpu .
#   (scripts/build_image.sh builds and checks the CPU image with podman, from a debootstrap base; docs/containers.md)
#
# TemplateFlow files: fetched from TemplateFlow at build time (TEMPLATES=fetch), or copied from a local folder and
# checked complete (no network):  --build-arg TEMPLATES=local --build-context templateflow=/path/to/templateflow
#
# Bake the diffusion model into the image (otherwise mount a folder at $BIDS_RECON_DIFFUSION_MODEL):
#   python scripts/model_checksum.py /path/to/stable-diffusion-v1-4          # prints the folder's sha256
#   docker build --build-arg DIFFUSION_MODEL=bake --build-arg DIFFUSION_MODEL_SHA256=<sha256> \
#       --build-context diffusion_model=/path/to/stable-diffusion-v1-4 -t bidsrecon/bids_recon:0.1.0-sd14 .
#
# torch: PyPI's torch 2.14.1 Linux x86_64 wheel is built against CUDA 13.0 (it requires cuda-toolkit 13.0.x and
# ~3 GB of nvidia-* wheels); the CUDA image installs the same versions' CUDA wheels (torch + its matching
# torchvision) from the PyTorch index (TORCH_INDEX, cu130) on a CUDA 13.0 runtime base. CUDA 13 needs an NVIDIA
# driver >= 580 on the host. The CPU image takes torch 2.14.1+cpu / torchvision 0.29.1+cpu from PyTorch's CPU index
# (TORCH_INDEX=https://download.pytorch.org/whl/cpu), which depend on no nvidia-* wheel. CI installs the same
# versions from PyPI (README.md); all then install the project with `pip install -c requirements/constraints.txt`
# (tests/test_packaging.py checks that this file and README's CI command agree).
# pip's indexes for everything else: PyPI by default; PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS build
# arguments point the build at a mirror (with `--volume` for a local file index, as scripts/build_image.sh does).

# cuda | cpu
ARG BASE=cuda
ARG BASE_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04
ARG UV_VERSION=0.9.9
ARG PYTHON_VERSION=3.11
# fetch: download from TemplateFlow at build time; local: copy the templateflow build context and check it
ARG TEMPLATES=fetch
# none: /opt/models/stable-diffusion-v1-4 is an empty mount point; bake: copy the diffusion_model build context
ARG DIFFUSION_MODEL=none

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---- base-cuda: Python 3.11 (the version CI runs, installed by uv) in /opt/venv, on the CUDA runtime ----------
FROM ${BASE_IMAGE} AS base-cuda
ARG PYTHON_VERSION
ENV DEBIAN_FRONTEND=noninteractive \
    UV_PYTHON_INSTALL_DIR=/opt/python
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
RUN uv python install ${PYTHON_VERSION} \
    && uv venv --seed --python ${PYTHON_VERSION} /opt/venv \
    && chmod -R a+rX /opt/python /opt/venv

# ---- base-cpu: Debian's own Python (bookworm: 3.11) in /opt/venv; no uv, no CUDA ------------------------------
FROM ${BASE_IMAGE} AS base-cpu
ARG PYTHON_VERSION
ENV DEBIAN_FRONTEND=noninteractive
RUN if ! { command -v python3 && python3 -c "import venv, ensurepip" && test -e /etc/ssl/certs/ca-certificates.crt \
           && ldconfig -p | grep -q libgomp.so.1; } >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends ca-certificates libgomp1 python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -c "import sys; v = '%d.%d' % sys.version_info[:2]; assert v == '${PYTHON_VERSION}', \
        f'the base image has Python {v}, not ${PYTHON_VERSION}'" \
    && python3 -m venv /opt/venv \
    && chmod -R a+rX /opt/venv

FROM base-${BASE} AS base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- build: torch (CUDA or CPU wheel, from TORCH_INDEX) and bids_recon with the pinned versions ---------------
FROM base AS build
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG EXTRAS=""
# a package index mirror and its CA bundle, for the build only (not kept: RUN sees build arguments as variables)
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
RUN pip install -c requirements/constraints.txt --index-url ${TORCH_INDEX} --extra-index-url https://pypi.org/simple \
        torch==${TORCH_VERSION} torchvision==${TORCHVISION_VERSION}
COPY pyproject.toml README.md ./
COPY bids_recon bids_recon
COPY scripts scripts
RUN pip install -c requirements/constraints.txt ".${EXTRAS}" \
    && pip check \
    && python -c "import torch, bids_recon; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# ---- templates: the TemplateFlow files bids_recon reads, fetched once at build time or copied from a folder ----
FROM build AS templates-fetch
RUN python scripts/prefetch_templates.py --templateflow-home /opt/templateflow \
    && chmod -R a+rX /opt/templateflow

# replaced by `--build-context templateflow=/path/to/templateflow` when TEMPLATES=local
FROM scratch AS templateflow

FROM build AS templates-local
COPY --from=templateflow / /opt/templateflow/
RUN python scripts/prefetch_templates.py --templateflow-home /opt/templateflow --check \
    && chmod -R a+rX /opt/templateflow

FROM templates-${TEMPLATES} AS templates

# ---- the diffusion model: an empty folder (mount one at run time), or baked and checked by sha256 ------------
FROM scratch AS diffusion_model
# replaced by `--build-context diffusion_model=/path/to/model-folder` when DIFFUSION_MODEL=bake

FROM base AS model-none
RUN mkdir -p /opt/models/stable-diffusion-v1-4

FROM base AS model-bake
ARG DIFFUSION_MODEL_SHA256
COPY scripts/model_checksum.py /tmp/model_checksum.py
COPY --from=diffusion_model / /opt/models/stable-diffusion-v1-4/
RUN test -n "${DIFFUSION_MODEL_SHA256}" || { echo "DIFFUSION_MODEL=bake needs DIFFUSION_MODEL_SHA256" >&2; exit 1; } \
    && python /tmp/model_checksum.py /opt/models/stable-diffusion-v1-4 --expect "${DIFFUSION_MODEL_SHA256}" \
    && chmod -R a+rX /opt/models && rm /tmp/model_checksum.py

FROM model-${DIFFUSION_MODEL} AS model

# ---- final image: the build stage's venv where it was installed (no copy), the templates and the model ------------
# (Derived from the build stage rather than copying /opt/venv into a fresh base: the build stage has no compilers or
# other build-only tools to leave behind, and a copy would store the multi-GB venv twice in the builder's storage.)
FROM templates AS final
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="bids_recon" \
      org.opencontainers.image.description="BIDS-App: reconstruct seen images from fMRI (after Takagi & Nishimoto, CVPR 2023)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="https://github.com/bids-recon/bids_recon" \
      org.opencontainers.image.url="https://github.com/bids-recon/bids_recon" \
      org.opencontainers.image.documentation="https://github.com/bids-recon/bids_recon/tree/main/docs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="bids_recon developers" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

COPY --from=model /opt/models /opt/models

# A non-root user whose HOME any UID can read and write into (Apptainer runs as the calling user, not as this one).
RUN rm -rf /src \
    && useradd --create-home --home-dir /home/bidsrecon --uid 1001 --shell /bin/bash bidsrecon \
    && mkdir -p /home/bidsrecon/.cache \
    && chmod -R a+rwX /home/bidsrecon

# Everything offline at run time; one BLAS/OpenMP thread per nipype process (bids_recon --omp-nthreads raises it).
ENV HOME=/home/bidsrecon \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=0 \
    BIDS_RECON_DIFFUSION_MODEL=/opt/models/stable-diffusion-v1-4 \
    HF_HOME=/home/bidsrecon/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    NIPYPE_NO_ET=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    NUMEXPR_NUM_THREADS=1 \
    PYTHONUNBUFFERED=1

USER bidsrecon
WORKDIR /home/bidsrecon
RUN bids_recon --version \
    && python -c "from bids_recon.rois import templates as t; assert not t.missing_templates(t.required_templates())"
ENTRYPOINT ["bids_recon"]
