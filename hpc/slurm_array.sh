#!/bin/bash
# One bids_recon participant per SLURM array task, in the Apptainer image, on a compute node without internet.
#
#   hpc/submit.sh participants.txt          # this array, then the group level after it (hpc/slurm_group.sh)
#   sbatch --array=1-$(( $(wc -l < participants.txt) )) hpc/slurm_array.sh     # the array alone
#
# participants.txt: one label per line (e.g. `01`); make it with
#   ls -d /data/ds/sub-* | xargs -n1 basename | sed 's/^sub-//' > participants.txt
# The settings below can be edited here or given as environment variables when submitting (sbatch passes the
# submitting shell's environment on by default): BIDS_DIR=/scratch/ds OUT_DIR=... hpc/submit.sh participants.txt
#
# Resources: measured needs are in docs/hpc.md (per-stage memory and time on the simulator; they grow with the
# number of runs, trials and ROI voxels). Start with the values below and read the task's `sacct` MaxRSS.
#SBATCH --job-name=bids_recon
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=02:00:00
#SBATCH --output=logs/bids_recon_%A_%a.out
##SBATCH --gres=gpu:1            # uncomment for --device cuda / the diffusion generator
set -uo pipefail

# --- edit these (or set them in the environment of sbatch / hpc/submit.sh) -----------------------------------
BIDS_DIR=${BIDS_DIR:-/data/ds}                                   # raw BIDS dataset (read only)
FMRIPREP_DIR=${FMRIPREP_DIR:-/data/ds/derivatives/fmriprep}      # fMRIPrep derivatives (read only)
OUT_DIR=${OUT_DIR:-/data/bids_recon}                             # derivatives written here (shared file system)
IMAGE=${IMAGE:-/containers/bids_recon-0.1.0.sif}                 # apptainer build ... (docs/containers.md)
PARTICIPANTS=${PARTICIPANTS:-participants.txt}
# ------------------------------------------------------------------------------------------------------------------

LABEL=$(sed -n "${SLURM_ARRAY_TASK_ID}p" "$PARTICIPANTS")
[ -n "$LABEL" ] || { echo "no participant on line ${SLURM_ARRAY_TASK_ID} of $PARTICIPANTS" >&2; exit 64; }

# nipype's work directory on node-local scratch (fast, and removed at the end of the task)
SCRATCH=${SLURM_TMPDIR:-${TMPDIR:-/tmp}}/bids_recon_${SLURM_ARRAY_JOB_ID:-0}_${SLURM_ARRAY_TASK_ID}
mkdir -p "$SCRATCH/home" "$OUT_DIR" logs
trap 'rm -rf "$SCRATCH"' EXIT

MEM_GB=$(( ${SLURM_MEM_PER_NODE:-8192} / 1024 ))   # SLURM gives MB; bids_recon --mem takes GB
NV=""
[ -n "${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}" ] && NV="--nv"

# bids_recon arguments (inside the container: /data, /fmriprep, /out, /work are the bind points below)
BIDS_RECON_ARGS=(
  /data /out participant
  --participant-label "$LABEL"
  -d fmriprep=/fmriprep
  -w /work
  --nprocs "${SLURM_CPUS_PER_TASK:-1}"
  --omp-nthreads 1
  --mem "$MEM_GB"
  --skip-bids-validation
)
# (--skip-bids-validation: validate the dataset once, e.g. on the login node, instead of in every task.)

# Folders bound into the container. Optional, read-only: CACHE_DIR, a `bids_recon-fetch CACHE_DIR --mount-point /cache`
# folder (TemplateFlow, Hugging Face and torch hub caches; its bids_recon.env points the variables at /cache), and
# MODEL_DIR, the diffusion model's folder (--generator diffusion). Without them the image's own templates are used.
CACHE_DIR=${CACHE_DIR:-}
MODEL_DIR=${MODEL_DIR:-}
BINDS=(-B "$BIDS_DIR":/data:ro -B "$FMRIPREP_DIR":/fmriprep:ro -B "$OUT_DIR":/out -B "$SCRATCH":/work)
[ -n "$CACHE_DIR" ] && BINDS+=(-B "$CACHE_DIR":/cache:ro --env-file "$CACHE_DIR/bids_recon.env")
[ -n "$MODEL_DIR" ] && BINDS+=(-B "$MODEL_DIR":/opt/models/stable-diffusion-v1-4:ro)

start=$(date +%s)
apptainer run $NV --cleanenv --home "$SCRATCH/home" "${BINDS[@]}" "$IMAGE" "${BIDS_RECON_ARGS[@]}"
code=$?

# one line per task: the exit code is the BIDS-App code (0 ok, 16 invalid BIDS, 65 bad data, 66 missing input...)
printf '%s\tsub-%s\tjob %s_%s\texit %d\t%d s\t%s\n' "$(date -Is)" "$LABEL" "${SLURM_ARRAY_JOB_ID:-0}" \
  "${SLURM_ARRAY_TASK_ID}" "$code" "$(( $(date +%s) - start ))" "$(hostname)" >> logs/bids_recon_exit_codes.tsv
exit $code
