#!/bin/bash
# The group level of bids_recon, once every participant task has succeeded. hpc/submit.sh submits it with
# `--dependency=afterok:<array job id>`: SLURM starts it only after all the array's tasks ended with exit 0 (if one
# fails, it stays pending with reason DependencyNeverSatisfied: fix and resubmit that task, then this job).
#
#   sbatch --dependency=afterok:123456 hpc/slurm_group.sh
#SBATCH --job-name=bids_recon_group
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=00:30:00
#SBATCH --output=logs/bids_recon_group_%j.out
set -uo pipefail

# --- the same settings as hpc/slurm_array.sh (edit both, or set them in the environment of hpc/submit.sh) ----------
BIDS_DIR=${BIDS_DIR:-/data/ds}                                   # raw BIDS dataset (read only)
OUT_DIR=${OUT_DIR:-/data/bids_recon}                             # the participants' derivatives; group/ goes here
IMAGE=${IMAGE:-/containers/bids_recon-0.1.0.sif}
# ------------------------------------------------------------------------------------------------------------------

SCRATCH=${SLURM_TMPDIR:-${TMPDIR:-/tmp}}/bids_recon_group_${SLURM_JOB_ID:-0}
mkdir -p "$SCRATCH/home" logs
trap 'rm -rf "$SCRATCH"' EXIT

start=$(date +%s)
apptainer run --cleanenv --home "$SCRATCH/home" -B "$BIDS_DIR":/data:ro -B "$OUT_DIR":/out "$IMAGE" /data /out group
code=$?

printf '%s\tgroup\tjob %s\texit %d\t%d s\t%s\n' "$(date -Is)" "${SLURM_JOB_ID:-0}" "$code" \
  "$(( $(date +%s) - start ))" "$(hostname)" >> logs/bids_recon_exit_codes.tsv
exit $code
