#!/usr/bin/env bash
# Base-to-new generalization for zero-shot CLIP, the "base" half: evaluate CLIP with hand-crafted prompts on the
# base classes, written where a trained method's base accuracy goes, so that scripts/sweep.sh and
# `python -m clipbayes.results` treat zero-shot CLIP like any trainer. Nothing is trained; the seed only names the
# folder (zero-shot results are identical for every seed, so SEEDS=1 is enough in a sweep).
#
# Usage:   scripts/zsclip/base2new_train.sh DATASET SEED
# Example: DATA=/data/coop scripts/zsclip/base2new_train.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [ZeroshotCLIP], CFG [vit_b16],
#   SHOTS [16, only in the folder name], PYTHON [python].
# Output:  output/base2new/train_base/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED
set -euo pipefail

if [[ $# -ne 2 ]]; then  # print the header above as the usage message
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
fi
DATASET=$1
SEED=$2
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DATA=${DATA:-/path/to/datasets}
TRAINER=${TRAINER:-ZeroshotCLIP}
CFG=${CFG:-vit_b16}
SHOTS=${SHOTS:-16}
PYTHON=${PYTHON:-python}

DATASET_CFG=configs/datasets/${DATASET}.yaml
TRAINER_CFG=configs/trainers/${TRAINER}/${CFG}.yaml
[[ $SEED =~ ^[0-9]+$ ]] || { echo "SEED must be a non-negative integer, got '${SEED}'" >&2; exit 2; }
[[ -f $DATASET_CFG ]] || { echo "No dataset config ${DATASET_CFG} (see configs/datasets/)" >&2; exit 2; }
[[ -f $TRAINER_CFG ]] || { echo "No trainer config ${TRAINER_CFG} (see configs/trainers/${TRAINER}/)" >&2; exit 2; }

DIR=output/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
if grep -qs '^\* accuracy:' "${DIR}"/log.txt*; then
    echo "Results are available in ${DIR}. Skip this job"
    exit 0
fi
[[ -d $DATA ]] || { echo "Dataset root '${DATA}' is not a directory: set DATA=/path/to/datasets" >&2; exit 2; }
"$PYTHON" train.py \
    --root "$DATA" \
    --seed "$SEED" \
    --trainer "$TRAINER" \
    --dataset-config-file "$DATASET_CFG" \
    --config-file "$TRAINER_CFG" \
    --output-dir "$DIR" \
    --eval-only \
    DATASET.SUBSAMPLE_CLASSES base
