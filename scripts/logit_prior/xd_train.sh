#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1 (LogitPrior, AISTATS'25): train on ImageNet, 16 shots
# per class, all 1,000 classes (the paper: seed 1). xd_test.sh then evaluates this model on the other datasets and
# the ImageNet variants.
#
# Usage:   scripts/logit_prior/xd_train.sh SEED
# Example: DATA=/data/coop BASE=CoCoOp scripts/logit_prior/xd_train.sh 1
# Environment (defaults in brackets): DATA [/path/to/datasets], BASE [CoOp; CoCoOp or BayesianPrompt: picks CFG],
#   CFG [vit_b16_coop_c4_ep10_batch2_ctxv1, vit_b16_cocoop_c4_ep10_batch1_ctxv1_xd or
#   vit_b16_bayesianprompt_c4_ep10_batch4_ctxv1; the config's TRAINER.LOGIT_PRIOR.BASE is what runs],
#   SHOTS [16], PYTHON [python].
# Output:  output/imagenet/LogitPrior/CFG_SHOTSshots/seedSEED
set -euo pipefail

if [[ $# -ne 1 ]]; then  # print the header above as the usage message
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
fi
SEED=$1
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
DATASET=imagenet

DATASET_CFG=configs/datasets/${DATASET}.yaml
TRAINER_CFG=configs/trainers/${TRAINER}/${CFG}.yaml
[[ $SEED =~ ^[0-9]+$ ]] || { echo "SEED must be a non-negative integer, got '${SEED}'" >&2; exit 2; }
[[ -f $DATASET_CFG ]] || { echo "No dataset config ${DATASET_CFG} (see configs/datasets/)" >&2; exit 2; }
[[ -f $TRAINER_CFG ]] || { echo "No trainer config ${TRAINER_CFG} (see configs/trainers/${TRAINER}/)" >&2; exit 2; }
EPOCHS=$(sed -n 's/^[[:space:]]*MAX_EPOCH:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$TRAINER_CFG" | tail -n 1)
[[ -n $EPOCHS ]] || { echo "${TRAINER_CFG} sets no OPTIM.MAX_EPOCH" >&2; exit 2; }

DIR=output/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
# Finished = the last epoch's checkpoint exists; an unfinished run in DIR is resumed by train.py.
if compgen -G "${DIR}/*/model.pth.tar-${EPOCHS}" > /dev/null; then
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
    DATASET.NUM_SHOTS "$SHOTS"
