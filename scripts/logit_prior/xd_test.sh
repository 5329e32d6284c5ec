#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 2 (LogitPrior, AISTATS'25): evaluate the ImageNet model
# of xd_train.sh on DATASET (all its classes). Cross-dataset: caltech101 oxford_pets stanford_cars oxford_flowers
# food101 fgvc_aircraft sun397 dtd eurosat ucf101; domain generalization: imagenetv2 imagenet_sketch imagenet_a
# imagenet_r.
#
# Usage:   scripts/logit_prior/xd_test.sh DATASET SEED
# Example: DATA=/data/coop BASE=CoCoOp scripts/logit_prior/xd_test.sh imagenet_sketch 1
# Environment (defaults in brackets): DATA [/path/to/datasets], BASE [CoOp; CoCoOp or BayesianPrompt: picks CFG],
#   CFG [vit_b16_coop_c4_ep10_batch2_ctxv1, vit_b16_cocoop_c4_ep10_batch1_ctxv1_xd or
#   vit_b16_bayesianprompt_c4_ep10_batch4_ctxv1], SHOTS [16], LOADEP [the config's MAX_EPOCH], PYTHON [python].
# Output:  output/evaluation/LogitPrior/CFG_SHOTSshots/DATASET/seedSEED
set -euo pipefail

if [[ $# -ne 2 ]]; then  # print the header above as the usage message
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
fi
DATASET=$1
SEED=$2
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DATA=${DATA:-/path/to/datasets}
TRAINER=LogitPrior
BASE=${BASE:-CoOp}
case $BASE in
    CoOp) CFG=${CFG:-vit_b16_coop_c4_ep10_batch2_ctxv1} ;;
    CoCoOp) CFG=${CFG:-vit_b16_cocoop_c4_ep10_batch1_ctxv1_xd} ;;
    BayesianPrompt) CFG=${CFG:-vit_b16_bayesianprompt_c4_ep10_batch4_ctxv1} ;;
    *) echo "BASE must be CoOp, CoCoOp or BayesianPrompt, got '${BASE}'" >&2; exit 2 ;;
esac
SHOTS=${SHOTS:-16}
PYTHON=${PYTHON:-python}

DATASET_CFG=configs/datasets/${DATASET}.yaml
TRAINER_CFG=configs/trainers/${TRAINER}/${CFG}.yaml
[[ $SEED =~ ^[0-9]+$ ]] || { echo "SEED must be a non-negative integer, got '${SEED}'" >&2; exit 2; }
[[ -f $DATASET_CFG ]] || { echo "No dataset config ${DATASET_CFG} (see configs/datasets/)" >&2; exit 2; }
[[ -f $TRAINER_CFG ]] || { echo "No trainer config ${TRAINER_CFG} (see configs/trainers/${TRAINER}/)" >&2; exit 2; }
LOADEP=${LOADEP:-$(sed -n 's/^[[:space:]]*MAX_EPOCH:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$TRAINER_CFG" | tail -n 1)}
[[ -n $LOADEP ]] || { echo "${TRAINER_CFG} sets no OPTIM.MAX_EPOCH: set LOADEP" >&2; exit 2; }

MODEL_DIR=output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
DIR=output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
if grep -qs '^\* accuracy:' "${DIR}"/log.txt*; then
    echo "Results are available in ${DIR}. Skip this job"
    exit 0
fi
if ! compgen -G "${MODEL_DIR}/*/model.pth.tar-${LOADEP}" > /dev/null; then
    echo "No epoch-${LOADEP} model in ${MODEL_DIR}: run BASE=${BASE} CFG=${CFG}" \
         "scripts/logit_prior/xd_train.sh ${SEED} first" >&2
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
    --eval-only
