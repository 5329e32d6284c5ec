#!/usr/bin/env bash
# CoOp domain generalization / cross-dataset evaluation (IJCV'22): test the 16-shot ImageNet models of
#   scripts/coop/main.sh imagenet CFG end 16 16 False
# on DATASET (imagenetv2, imagenet_sketch, imagenet_a, imagenet_r, or any other dataset), for seeds 1, 2 and 3.
# CoOp uses CFG rn50_ep50 (or rn101_ep50, vit_b32_ep50, vit_b16_ep50) here.
#
# Usage:   scripts/coop/eval.sh DATASET CFG
# Example: DATA=/data/coop scripts/coop/eval.sh imagenet_sketch rn50_ep50
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoOp], SHOTS [16], NCTX [16],
#   CSC [False], CTP [end], LOADEP [the config's MAX_EPOCH], SEEDS ["1 2 3"], PYTHON [python].
# Output:  output/evaluation/TRAINER/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/DATASET/seedSEED
set -euo pipefail

if [[ $# -ne 2 ]]; then  # print the header above as the usage message
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
fi
DATASET=$1
CFG=$2
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DATA=${DATA:-/path/to/datasets}
TRAINER=${TRAINER:-CoOp}
SHOTS=${SHOTS:-16}
NCTX=${NCTX:-16}
CSC=${CSC:-False}
CTP=${CTP:-end}
SEEDS=${SEEDS:-1 2 3}
PYTHON=${PYTHON:-python}

DATASET_CFG=configs/datasets/${DATASET}.yaml
TRAINER_CFG=configs/trainers/${TRAINER}/${CFG}.yaml
[[ -f $DATASET_CFG ]] || { echo "No dataset config ${DATASET_CFG} (see configs/datasets/)" >&2; exit 2; }
[[ -f $TRAINER_CFG ]] || { echo "No trainer config ${TRAINER_CFG} (see configs/trainers/${TRAINER}/)" >&2; exit 2; }
LOADEP=${LOADEP:-$(sed -n 's/^[[:space:]]*MAX_EPOCH:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$TRAINER_CFG" | tail -n 1)}
[[ -n $LOADEP ]] || { echo "${TRAINER_CFG} sets no OPTIM.MAX_EPOCH: set LOADEP" >&2; exit 2; }

SETTING=nctx${NCTX}_csc${CSC}_ctp${CTP}
for SEED in $SEEDS; do
    [[ $SEED =~ ^[0-9]+$ ]] || { echo "Seeds must be non-negative integers, got '${SEED}'" >&2; exit 2; }
    MODEL_DIR=output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/${SETTING}/seed${SEED}
    DIR=output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${SETTING}/${DATASET}/seed${SEED}
    if grep -qs '^\* accuracy:' "${DIR}"/log.txt*; then
        echo "Results are available in ${DIR}. Skip this job"
        continue
    fi
    if ! compgen -G "${MODEL_DIR}/*/model.pth.tar-${LOADEP}" > /dev/null; then
        echo "No epoch-${LOADEP} model in ${MODEL_DIR}: run" \
             "scripts/coop/main.sh imagenet ${CFG} ${CTP} ${NCTX} ${SHOTS} ${CSC} first" >&2
        exit 1
    fi
    [[ -d $DATA ]] || { echo "Dataset root '${DATA}' is not a directory: set DATA=/path/to/datasets" >&2; exit 2; }
    "$PYTHON" train.py \
        --root "$DATA" \
        --seed "$SEED" \
        --trainer "$TRAINER" \
        --dataset-config-file "$DATASET_CFG" \
        --config-file "$TRAINER_CFG" \
        --output-dir "$DIR" \
        --model-dir "$MODEL_DIR" \
        --load-epoch "$LOADEP" \
        --eval-only \
        TRAINER.COOP.N_CTX "$NCTX" \
        TRAINER.COOP.CSC "$CSC" \
        TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP"
done
