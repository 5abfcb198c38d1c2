#!/usr/bin/env bash
# Build the CPU image with podman from a clean clone, run the README's demo on the host and in the container, and
# compare the outputs file by file (sha256 of every TSV and NIfTI). Exits non-zero on any difference.
#
#   scripts/build_image.sh                       # CPU torch from PyTorch's CPU index (torch 2.14.1+cpu) where it
#                                                # is reachable, else the host pip's torch (TORCH_INDEX=host)
#   TORCH_INDEX=host scripts/build_image.sh      # torch from the index the host's pip uses (see below)
#
# Steps: (1) a Debian bookworm + python3 base image made with debootstrap and `podman import`, if missing;
# (2) `git clone` of the repository (committed code only); (3) `bids_recon-sim` writes the demo dataset and its
# TemplateFlow folder on the host; (4) `podman build --build-arg BASE=cpu --build-arg TEMPLATES=local` with that
# folder as the `templateflow` build context (TemplateFlow's servers are not needed); (5) participant and group
# levels on the host (the clone's code, the host's venv) and in the container (non-root, input read-only,
# --network none, no host variables); (6) sha256 of every *.tsv, *.nii, *.nii.gz under both output folders.
#
# Settings (environment variables):
#   IMG_DIR      work folder: clone, base rootfs, demo data, outputs, hashes (default /tmp/img)
#   IMAGE        tag of the image built (default localhost/bids_recon:0.1.0-cpu)
#   BASE_IMAGE   CPU base image (default localhost/debian-bookworm-python, made with debootstrap when missing)
#   TORCH_INDEX  where torch/torchvision come from: `auto` (default: https://download.pytorch.org/whl/cpu when it
#                answers, else `host`), a URL, or `host`: the index of the host's pip that holds torch (PyPI's torch
#                2.14.1 wheel, a CUDA 13.0 build that pulls ~3 GB of nvidia-* wheels: a 6.95 GB image)
#   PYTHON       the host Python with bids_recon installed (default: python3 on PATH, e.g. an activated venv)
#   PRESET, SEED simulator preset and seed (small, 0); RANDOM_SEED bids_recon --random-seed (default 0)
#   NPROCS       --nprocs on both sides (default 2)
#   ULIMITS      podman run's --ulimit options (default below: nofile 16384, nproc 8192)
#   RUNTIME_ONLY 1: build nothing; run the container side in BASE_IMAGE with the host's Python, venv and the clone
#                mounted read-only (for a machine without the disk for the image: checks the container runtime's
#                isolation with the host's software, not the image)
#   MIN_FREE_GB  refuse to build when the build would leave less free in podman's storage (default 12); NEED_GB
#                overrides the build's estimated need (5 GB with the CPU wheels, 16 GB with PyPI's CUDA torch)
# The build's pip uses the same package indexes as the host's pip (`pip config list`): local file indexes
# (file://...) and find-links folders are mounted read-only into the build at the same paths, and the host pip's
# `cert` (a CA bundle: on a network whose TLS proxy has its own CA, pip inside the build needs it to reach PyPI) is
# mounted read-only and given as PIP_CERT. None of these is kept in the image.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
IMG_DIR=${IMG_DIR:-/tmp/img}
IMAGE=${IMAGE:-localhost/bids_recon:0.1.0-cpu}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian-bookworm-python}
TORCH_INDEX=${TORCH_INDEX:-auto}
CPU_TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON=${PYTHON:-python3}
PRESET=${PRESET:-small}
SEED=${SEED:-0}
RANDOM_SEED=${RANDOM_SEED:-0}
NPROCS=${NPROCS:-2}
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)
# podman's default rlimits (nofile 1048576, nproc unlimited) are above what this sandbox lets runc set ("error setting
# rlimit type 7/6: operation not permitted"): give limits below the host's hard limits (ULIMITS="" for podman's own)
read -r -a ULIMITS <<<"${ULIMITS---ulimit nofile=16384:16384 --ulimit nproc=8192:8192}"
# the image's thread and offline settings (Dockerfile ENV), given to the host run too
THREADS=(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMEXPR_NUM_THREADS=1)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'build_image.sh: %s\n' "$*" >&2; exit 1; }
command -v podman >/dev/null || die "podman not found (apt-get install -y podman runc debootstrap uidmap fuse-overlayfs)"
PY_BIN=$(command -v "$PYTHON") || die "$PYTHON not found"
VENV_BIN=$(dirname "$PY_BIN")
[ -x "$VENV_BIN/bids_recon" ] || die "$VENV_BIN/bids_recon not found: activate the venv with bids_recon installed"
mkdir -p "$IMG_DIR"

# ---- 1. base image ------------------------------------------------------------------------------------------
if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
  log "base image $BASE_IMAGE: debootstrap bookworm (minbase + python3, python3-venv, ca-certificates, libgomp1)"
  command -v debootstrap >/dev/null || die "debootstrap not found"
  rm -rf "$IMG_DIR/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1 \
    bookworm "$IMG_DIR/rootfs" http://deb.debian.org/debian >"$IMG_DIR/debootstrap.log" 2>&1 \
    || die "debootstrap failed: $IMG_DIR/debootstrap.log"
  rm -rf "$IMG_DIR"/rootfs/var/lib/apt/lists/* "$IMG_DIR"/rootfs/var/cache/apt/*.bin \
    "$IMG_DIR"/rootfs/var/cache/apt/archives/*.deb
  tar --numeric-owner -C "$IMG_DIR/rootfs" -c . | "${PODMAN[@]}" import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE"
  rm -rf "$IMG_DIR/rootfs"
fi
"${PODMAN[@]}" run --rm --network none "${ULIMITS[@]}" "$BASE_IMAGE" python3 --version

# ---- 2. a clean clone: the image and the host run use committed code only ---------------------------------------
SRC=$IMG_DIR/src
rm -rf "$SRC"
git clone --quiet "$REPO" "$SRC"
VCS_REF=$(git -C "$SRC" rev-parse HEAD)
log "clone of $REPO at $VCS_REF"
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]; then
  log "note: $REPO has uncommitted changes; they are NOT in the image nor in the host run"
fi
# the host run imports bids_recon from the clone (PYTHONPATH comes before the venv's editable install)
[ "$(cd /tmp && PYTHONPATH=$SRC "$PY_BIN" -c 'import bids_recon; print(bids_recon.__file__)')" = \
  "$SRC/bids_recon/__init__.py" ] || die "PYTHONPATH=$SRC does not make $PYTHON import the clone's bids_recon"

# ---- 3. demo dataset (on the host) --------------------------------------------------------------------------------
DEMO=$IMG_DIR/demo
rm -rf "$DEMO"
mkdir -p "$DEMO"
# The host run gets the image's settings (Dockerfile ENV), HOME and HF_HOME included: the metrics tables name the
# cache folders where a metric's weights were looked for (derived from HOME), so another HOME changes those rows.
# bids_recon writes nothing there (its libraries' caches go in the work directory); the folder need not exist.
IMAGE_HOME=/home/bidsrecon
HOST_ENV=(env -i "PATH=$VENV_BIN:/usr/local/bin:/usr/bin:/bin" "HOME=$IMAGE_HOME" "PYTHONPATH=$SRC" LANG=C.UTF-8
          "HF_HOME=$IMAGE_HOME/.cache/huggingface" "${THREADS[@]}" TEMPLATEFLOW_AUTOUPDATE=0 HF_HUB_OFFLINE=1
          TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 NIPYPE_NO_ET=1 PYTHONUNBUFFERED=1
          PYTHONDONTWRITEBYTECODE=1)
log "bids_recon-sim $DEMO/ds --preset $PRESET --seed $SEED"
(cd "$DEMO" && "${HOST_ENV[@]}" bids_recon-sim ds --preset "$PRESET" --seed "$SEED" --overwrite >sim.log 2>&1) \
  || { tail -20 "$DEMO/sim.log"; die "simulation failed"; }
TEMPLATES=$DEMO/ds_templateflow
[ -d "$TEMPLATES" ] || die "the simulator wrote no $TEMPLATES"

# ---- 4. the image --------------------------------------------------------------------------------------------------
RUNTIME_ONLY=${RUNTIME_ONLY:-0}
build_image() {
  # Every argument used in a FROM is given explicitly: podman 4.3's stage skipping does not see the Dockerfile's
  # defaults of those (it skipped model-none, then failed to resolve "model-none" as an image name).
  BUILD_ARGS=(--build-arg BASE=cpu --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg TEMPLATES=local
              --build-arg DIFFUSION_MODEL=none
              --build-arg "VCS_REF=$VCS_REF" --build-arg "BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)")
  VOLUMES=()
  mount_file_urls() {  # mount every local folder of a pip index/find-links setting read-only at the same path
    local url dir
    for url in $1; do
      dir=${url#file://}
      [ -d "$dir" ] || continue
      [ "$dir" != "$url" ] || [[ "$url" == /* ]] || continue
      case "$dir" in */simple|*/simple/) dir=$(dirname "${dir%/}") ;; esac  # the index's files lie beside simple/
      VOLUMES+=(-v "$dir:$dir:ro")
    done
  }
  # the host pip's effective setting (`pip config list`: its PIP_* variables first, then its config files)
  PIP_CONFIG=$("$PY_BIN" -m pip config list 2>/dev/null || true)
  pip_setting() {
    local value
    value=$(sed -n "s/^:env:\.$1='\(.*\)'\$/\1/p" <<<"$PIP_CONFIG" | tail -1)
    [ -n "$value" ] || value=$(sed -n "s/^\(global\|install\)\.$1='\(.*\)'\$/\2/p" <<<"$PIP_CONFIG" | tail -1)
    printf '%s' "$value"
  }
  HOST_INDEX=$(pip_setting index-url)
  HOST_EXTRA=$(pip_setting extra-index-url)
  HOST_LINKS=$(pip_setting find-links)
  [ -n "$HOST_INDEX" ] && { BUILD_ARGS+=(--build-arg "PIP_INDEX_URL=$HOST_INDEX"); mount_file_urls "$HOST_INDEX"; }
  [ -n "${HOST_EXTRA// /}" ] && { BUILD_ARGS+=(--build-arg "PIP_EXTRA_INDEX_URL=${HOST_EXTRA% }"); mount_file_urls "$HOST_EXTRA"; }
  HOST_CERT=$(pip_setting cert)
  if [ -n "$HOST_CERT" ] && [ -f "$HOST_CERT" ]; then
    VOLUMES+=(-v "$(readlink -f "$HOST_CERT"):/run/pip-host-ca.crt:ro")
    BUILD_ARGS+=(--build-arg PIP_CERT=/run/pip-host-ca.crt)
  fi
  [ -n "${HOST_LINKS// /}" ] && { BUILD_ARGS+=(--build-arg "PIP_FIND_LINKS=${HOST_LINKS% }"); mount_file_urls "$HOST_LINKS"; }

  if [ "$TORCH_INDEX" = auto ]; then
    # torch's CPU wheels where PyTorch's index is reachable, else the host pip's torch (PyPI's CUDA build)
    if curl -fsS -m 20 -o /dev/null "$CPU_TORCH_INDEX/torch/"; then
      TORCH_INDEX=$CPU_TORCH_INDEX
    else
      log "cannot reach $CPU_TORCH_INDEX: torch from the host pip's index instead (TORCH_INDEX=host)"
      TORCH_INDEX=host
    fi
  fi
  if [ "$TORCH_INDEX" = host ]; then
    # the first of the host's indexes that lists torch (here: a local PyPI mirror holding PyPI's own wheel)
    TORCH_INDEX=https://pypi.org/simple
    for url in $HOST_INDEX $HOST_EXTRA; do
      dir=${url#file://}
      if [ "$dir" != "$url" ] && [ -d "$dir/torch" ]; then TORCH_INDEX=$url; break; fi
    done
    log "TORCH_INDEX=host: torch from $TORCH_INDEX (PyPI's wheel: a CUDA 13.0 build, with its nvidia-* wheels)"
  elif ! curl -fsS -m 20 -o /dev/null "${TORCH_INDEX%/}/torch/"; then
    die "cannot reach $TORCH_INDEX (torch's CPU wheels). Give another index with TORCH_INDEX=URL, or TORCH_INDEX=host
  to take torch from the host pip's index (PyPI's CUDA build: a multi-GB image)"
  fi
  BUILD_ARGS+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")

  # Disk: podman stores every layer unpacked and, while committing a step, the step's files twice (the container's
  # upper folder and the new layer), so a build needs about twice the image's size free in its storage. Seen here:
  # the host's venv with PyPI's CUDA torch is 6.6 GB, and a build with it took the free space from 19 GB to 12 GB before
  # it had committed its torch layer. The build is refused when it would leave less than MIN_FREE_GB (12) free.
  storage=$("${PODMAN[@]}" info --format '{{.Store.GraphRoot}}')
  mkdir -p "$storage"
  free_gb=$(df --output=avail -B1G "$storage" | tail -1 | tr -d ' ')
  case "$TORCH_INDEX" in *download.pytorch.org/whl/cpu*) need_gb=${NEED_GB:-5} ;; *) need_gb=${NEED_GB:-16} ;; esac
  if [ "$free_gb" -lt $(( need_gb + ${MIN_FREE_GB:-12} )) ]; then
    die "$storage has $free_gb GB free; this build needs about $need_gb GB and should leave ${MIN_FREE_GB:-12} GB free
  (NEED_GB=, MIN_FREE_GB= change the estimate and the margin)"
  fi

  log "podman build -t $IMAGE (BASE=cpu, TEMPLATES=local, TORCH_INDEX=$TORCH_INDEX)"
  build_start=$(date +%s)
  "${PODMAN[@]}" build --network host --layers "${BUILD_ARGS[@]}" "${VOLUMES[@]}" \
    --build-context "templateflow=$TEMPLATES" -t "$IMAGE" "$SRC" >"$IMG_DIR/build.log" 2>&1 \
    || { tail -30 "$IMG_DIR/build.log"; die "podman build failed: $IMG_DIR/build.log"; }
  build_s=$(( $(date +%s) - build_start ))
  size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
}
if [ "$RUNTIME_ONLY" = 1 ]; then
  # No image build: the demo runs in the base image with the host's Python, venv and the clone mounted read-only
  # at their own paths. This checks the container side of the contract (non-root, read-only input and root file
  # system, no network, no host variables) with the host's software, not the image's software.
  IMAGE=$BASE_IMAGE build_s=n/a size=0
  PY_BASE=$("$PY_BIN" -c 'import sys; print(sys.base_prefix)')
  PY_PREFIX=$("$PY_BIN" -c 'import sys; print(sys.prefix)')
  RUNTIME_MOUNTS=(-v "$PY_BASE:$PY_BASE:ro" -v "$PY_PREFIX:$PY_PREFIX:ro" -v "$SRC:$SRC:ro"
                  -v "$TEMPLATES:/opt/templateflow:ro" --entrypoint "$VENV_BIN/bids_recon"
                  --env "PATH=$VENV_BIN:/usr/local/bin:/usr/bin:/bin" --env "PYTHONPATH=$SRC" --env "HOME=$IMAGE_HOME"
                  --env "HF_HOME=$IMAGE_HOME/.cache/huggingface" --env HF_HUB_DISABLE_TELEMETRY=1
                  --env TEMPLATEFLOW_HOME=/opt/templateflow --env TEMPLATEFLOW_AUTOUPDATE=0 --env HF_HUB_OFFLINE=1
                  --env TRANSFORMERS_OFFLINE=1 --env NIPYPE_NO_ET=1 --env PYTHONUNBUFFERED=1
                  --env PYTHONDONTWRITEBYTECODE=1)
  for setting in "${THREADS[@]}"; do RUNTIME_MOUNTS+=(--env "$setting"); done
  # the base image's /root is private (0700): a folder under it (pyenv's Python) is mounted inside an empty,
  # readable /root that holds only the mount points, never the host's /root
  rm -rf "$IMG_DIR/root_mountpoints"
  for path in "$PY_BASE" "$PY_PREFIX" "$SRC"; do
    case "$path" in /root/*) mkdir -p "$IMG_DIR/root_mountpoints/${path#/root/}" ;; esac
  done
  if [ -d "$IMG_DIR/root_mountpoints" ]; then
    chmod -R 755 "$IMG_DIR/root_mountpoints"
    RUNTIME_MOUNTS=(-v "$IMG_DIR/root_mountpoints:/root:ro" "${RUNTIME_MOUNTS[@]}")
  fi
  log "RUNTIME_ONLY=1: no build; the container is $BASE_IMAGE with $PY_PREFIX (on $PY_BASE) and $SRC mounted"
else
  RUNTIME_MOUNTS=()
  build_image
fi

# ---- 5. the demo: host, then container ------------------------------------------------------------------------------
RUN_ARGS=(participant -d fmriprep=DS/derivatives/fmriprep --random-seed "$RANDOM_SEED" --nprocs "$NPROCS" --omp-nthreads 1)
host_args() { local a; for a in "$@"; do printf '%s\n' "${a//DS/$DEMO/ds}"; done; }

log "host: participant + group levels"
rm -rf "$DEMO/out_host" "$DEMO/work_host"
host_start=$(date +%s.%N)
mapfile -t args < <(host_args "${RUN_ARGS[@]}")
"${HOST_ENV[@]}" "TEMPLATEFLOW_HOME=$TEMPLATES" bids_recon "$DEMO/ds" "$DEMO/out_host" "${args[@]}" \
  -w "$DEMO/work_host" >"$DEMO/host.log" 2>&1 || { tail -20 "$DEMO/host.log"; die "host participant level failed"; }
"${HOST_ENV[@]}" "TEMPLATEFLOW_HOME=$TEMPLATES" bids_recon "$DEMO/ds" "$DEMO/out_host" group \
  >>"$DEMO/host.log" 2>&1 || { tail -20 "$DEMO/host.log"; die "host group level failed"; }
host_s=$(awk -v a="$host_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')

log "container: participant + group levels (user 1001, /data read-only, --network none, no host variables)"
rm -rf "$DEMO/out_container" "$DEMO/work_container"
mkdir -p "$DEMO/out_container" "$DEMO/work_container"
chown 1001:1001 "$DEMO/out_container" "$DEMO/work_container"
chmod -R a+rX "$DEMO/ds"
CONTAINER=("${PODMAN[@]}" run --rm --network none "${ULIMITS[@]}" --user 1001:1001 --read-only --tmpfs /tmp
           -v "$DEMO/ds:/data:ro" -v "$DEMO/out_container:/out" -v "$DEMO/work_container:/work"
           "${RUNTIME_MOUNTS[@]}")
"${CONTAINER[@]}" --entrypoint env "$IMAGE" >"$DEMO/container_env.txt"   # what the process sees
cat "$DEMO/container_env.txt" >&2
mapfile -t args < <(for a in "${RUN_ARGS[@]}"; do printf '%s\n' "${a//DS//data}"; done)
container_start=$(date +%s.%N)
"${CONTAINER[@]}" "$IMAGE" /data /out "${args[@]}" -w /work >"$DEMO/container.log" 2>&1 \
  || { tail -20 "$DEMO/container.log"; die "container participant level failed"; }
"${CONTAINER[@]}" "$IMAGE" /data /out group >>"$DEMO/container.log" 2>&1 \
  || { tail -20 "$DEMO/container.log"; die "container group level failed"; }
container_s=$(awk -v a="$container_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')

# ---- 6. compare -------------------------------------------------------------------------------------------------------
hashes() { (cd "$1" && find . -type f \( -name '*.tsv' -o -name '*.nii' -o -name '*.nii.gz' \) -print0 \
              | LC_ALL=C sort -z | xargs -0 sha256sum); }
hashes "$DEMO/out_host" >"$DEMO/sha256_host.txt"
hashes "$DEMO/out_container" >"$DEMO/sha256_container.txt"
n_host=$(wc -l <"$DEMO/sha256_host.txt")
n_container=$(wc -l <"$DEMO/sha256_container.txt")
n_equal=$(comm -12 <(LC_ALL=C sort "$DEMO/sha256_host.txt") <(LC_ALL=C sort "$DEMO/sha256_container.txt") | wc -l)

if [ "$RUNTIME_ONLY" = 1 ]; then
  echo "image            none built (RUNTIME_ONLY=1): $IMAGE with the host's Python, venv and clone mounted"
else
  echo "image            $IMAGE ($("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12))"
  echo "image size       $size bytes ($(awk -v s="$size" 'BEGIN {printf "%.2f", s / 1e9}') GB)"
  echo "build time       $build_s s ($(nproc) cores; base image not included)"
fi
echo "torch            $("${CONTAINER[@]}" --entrypoint "$([ "$RUNTIME_ONLY" = 1 ] && echo "$PY_BIN" || echo python)" \
  "$IMAGE" -c 'import torch, numpy, scipy, sys; print(torch.__version__, "numpy", numpy.__version__, "scipy",
  scipy.__version__, "python", sys.version.split()[0])')"
echo "demo wall time   host ${host_s} s, container ${container_s} s (participant + group, preset $PRESET)"
echo "files compared   host $n_host, container $n_container, equal $n_equal"
if [ "$n_host" -eq 0 ] || [ "$n_equal" -ne "$n_host" ] || [ "$n_equal" -ne "$n_container" ]; then
  diff "$DEMO/sha256_host.txt" "$DEMO/sha256_container.txt" | head -40 >&2 || true
  die "the container's outputs differ from the host's ($DEMO/sha256_*.txt)"
fi
echo "OK: every TSV and NIfTI equal"
