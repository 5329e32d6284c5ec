#!/usr/bin/env bash
# CoOp few-shot learning (IJCV'22): train and test on DATASET with SHOTS images per class, for seeds 1, 2 and 3.
# CoOp's settings: CFG rn50_ep50 for 1-2 shots, rn50_ep100 for 4-8 shots, rn50 (200 epochs) for 16 shots (vit_b16*
# likewise); CTP end or middle; NCTX 16 (or 8, 4); CSC False (unified context) or True (class-specific).
#
# Usage:   scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC
# Example: DATA=/data/coop scripts/coop/main.sh caltech101 rn50_ep50 end 16 1 False
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoOp], SEEDS ["1 2 3"], PYTHON [python].
# Output:  output/DATASET/TRAINER/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seedSEED
set -euo pipefail

if [[ $# -ne 6 ]]; then  # print the header above as the usage message
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
fi
DATASET=$1
CFG=$2    # config file name in configs/trainers/TRAINER/
CTP=$3    # class token position: end, middle or front
NCTX=$4   # number of context tokens
SHOTS=$5  # shots per class: 1, 2, 4, 8 or 16
CSC=$6    # class-specific context: False or True
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DATA=${DATA:-/path/to/datasets}
TRAINER=${TRAINER:-CoOp}
SEEDS=${SEEDS:-1 2 3}
PYTHON=${PYTHON:-python}

DATASET_CFG=configs/datasets/${DATASET}.yaml
TRAINER_CFG=configs/trainers/${TRAINER}/${CFG}.yaml
[[ -f $DATASET_CFG ]] || { echo "No dataset config ${DATASET_CFG} (see configs/datasets/)" >&2; exit 2; }
[[ -f $TRAINER_CFG ]] || { echo "No trainer config ${TRAINER_CFG} (see configs/trainers/${TRAINER}/)" >&2; exit 2; }
[[ $CTP =~ ^(end|middle|front)$ ]] || { echo "CTP must be end, middle or front, got '${CTP}'" >&2; exit 2; }
[[ $NCTX =~ ^[1-9][0-9]*$ ]] || { echo "NCTX must be a positive integer, got '${NCTX}'" >&2; exit 2; }
[[ $SHOTS =~ ^[1-9][0-9]*$ ]] || { echo "SHOTS must be a positive integer, got '${SHOTS}'" >&2; exit 2; }
[[ $CSC =~ ^(True|False)$ ]] || { echo "CSC must be True or False, got '${CSC}'" >&2; exit 2; }
EPOCHS=$(sed -n 's/^[[:space:]]*MAX_EPOCH:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$TRAINER_CFG" | tail -n 1)
[[ -n $EPOCHS ]] || { echo "${TRAINER_CFG} sets no OPTIM.MAX_EPOCH" >&2; exit 2; }

for SEED in $SEEDS; do
    [[ $SEED =~ ^[0-9]+$ ]] || { echo "Seeds must be non-negative integers, got '${SEED}'" >&2; exit 2; }
    DIR=output/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}
    # Finished = the last epoch's checkpoint exists; an unfinished run in DIR is resumed by train.py.
    if compgen -G "${DIR}/*/model.pth.tar-${EPOCHS}" > /dev/null; then
        echo "Results are available in ${DIR}. Skip this job"
        continue
    fi
    [[ -d $DATA ]] || { echo "Dataset root '${DATA}' is not a directory: set DATA=/path/to/datasets" >&2; exit 2; }
    "$PYTHON" train.py \
        --root "$DATA" \
        --seed "$SEED" \
        --trainer "$TRAINER" \
        --dataset-config-file "$DATASET_CFG" \
        --config-file "$TRAINER_CFG" \
        --output-dir "$DIR" \
        TRAINER.COOP.N_CTX "$NCTX" \
        TRAINER.COOP.CSC "$CSC" \
        TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP" \
        DATASET.NUM_SHOTS "$SHOTS"
done
