#!/usr/bin/env bash
# Zero-shot CLIP (as CoOp's scripts/coop/zeroshot.sh): evaluate CLIP with hand-crafted prompts on the test set of
# DATASET; nothing is trained. CFG is a config in configs/trainers/ZeroshotCLIP/: rn50, rn101, vit_b32, vit_b16
# (the dataset's template, CoOp's ZeroshotCLIP) or the same with _ensemble (template ensemble, CoOp's ZeroshotCLIP2).
#
# Usage:   scripts/zsclip/zeroshot.sh DATASET CFG
# Example: DATA=/data/coop scripts/zsclip/zeroshot.sh oxford_pets vit_b16
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [ZeroshotCLIP], PYTHON [python].
# Output:  output/TRAINER/CFG/DATASET
set -euo pipefail

if [[ $# -ne 2 ]]; then  # print the header above as the usage message
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
fi
DATASET=$1
CFG=$2
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DATA=${DATA:-/path/to/datasets}
TRAINER=${TRAINER:-ZeroshotCLIP}
PYTHON=${PYTHON:-python}

DATASET_CFG=configs/datasets/${DATASET}.yaml
TRAINER_CFG=configs/trainers/${TRAINER}/${CFG}.yaml
[[ -f $DATASET_CFG ]] || { echo "No dataset config ${DATASET_CFG} (see configs/datasets/)" >&2; exit 2; }
[[ -f $TRAINER_CFG ]] || { echo "No trainer config ${TRAINER_CFG} (see configs/trainers/${TRAINER}/)" >&2; exit 2; }

DIR=output/${TRAINER}/${CFG}/${DATASET}
if grep -qs '^\* accuracy:' "${DIR}"/log.txt*; then
    echo "Results are available in ${DIR}. Skip this job"
    exit 0
fi
[[ -d $DATA ]] || { echo "Dataset root '${DATA}' is not a directory: set DATA=/path/to/datasets" >&2; exit 2; }
"$PYTHON" train.py \
    --root "$DATA" \
    --trainer "$TRAINER" \
    --dataset-config-file "$DATASET_CFG" \
    --config-file "$TRAINER_CFG" \
    --output-dir "$DIR" \
    --eval-only
