#!/bin/bash
# Submit bids_recon on SLURM: every participant as one task of an array job (hpc/slurm_array.sh), then the group
# level as a job that SLURM starts only when all tasks have succeeded (hpc/slurm_group.sh, --dependency=afterok).
#
#   ls -d /data/ds/sub-* | xargs -n1 basename | sed 's/^sub-//' > participants.txt
#   BIDS_DIR=/data/ds OUT_DIR=/data/bids_recon IMAGE=/containers/bids_recon-0.1.0.sif hpc/submit.sh participants.txt
#
# Run it from the folder where logs/ should go. The variables are those of the two job scripts (sbatch hands the
# environment of this shell to the jobs); extra sbatch options for both jobs: SBATCH_ARGS="--account=abc".
set -euo pipefail
HPC_DIR=$(cd "$(dirname "$0")" && pwd)
PARTICIPANTS=${1:-participants.txt}
[ -s "$PARTICIPANTS" ] || { echo "usage: $0 participants.txt (one label per line)" >&2; exit 64; }
n=$(grep -c . "$PARTICIPANTS")
export PARTICIPANTS
read -r -a extra <<<"${SBATCH_ARGS:-}"
mkdir -p logs

# --parsable prints "jobid" or "jobid;cluster"
array_job=$(sbatch --parsable "${extra[@]}" --array="1-$n" "$HPC_DIR/slurm_array.sh")
array_job=${array_job%%;*}
group_job=$(sbatch --parsable "${extra[@]}" --dependency="afterok:$array_job" "$HPC_DIR/slurm_group.sh")
group_job=${group_job%%;*}
echo "participants: job $array_job (array 1-$n, $PARTICIPANTS); group: job $group_job (afterok:$array_job)"
echo "follow with: squeue -u \$USER; cat logs/bids_recon_exit_codes.tsv"
