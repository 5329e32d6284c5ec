#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 2 (BayesianPrompt, ICCV'23): evaluate the ImageNet model
# of xd_train.sh on DATASET (all its classes), with the same L. Cross-dataset: caltech101 oxford_pets stanford_cars
# oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101; domain generalization: imagenetv2
# imagenet_sketch imagenet_a imagenet_r.
#
# Usage:   scripts/bayesian_prompt/xd_test.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/bayesian_prompt/xd_test.sh imagenet_sketch 1
# Environment: see scripts/bayesian_prompt/settings.sh (DATA, CFG, SAMPLES, EPOCHS, PYTHON).
# Output:  output/evaluation/BayesianPrompt/CFG_16shots/DATASET/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

[[ $# -ge 2 ]] || usage
DATASET=$1
SEED=$2
cd "${HERE}/../.."
check_run "$DATASET" "$SEED"
paper_setting imagenet

MODEL_DIR=output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
DIR=output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
if grep -qs '^\* accuracy:' "${DIR}"/log.txt*; then
    echo "Results are available in ${DIR}. Skip this job"
    exit 0
fi
if ! compgen -G "${MODEL_DIR}/*/model.pth.tar-${EPOCHS}" > /dev/null; then
    echo "No epoch-${EPOCHS} model in ${MODEL_DIR}: run scripts/bayesian_prompt/xd_train.sh ${SEED} first" >&2
    exit 1
fi
check_data
"$PYTHON" train.py \
    --root "$DATA" \
    --seed "$SEED" \
    --trainer "$TRAINER" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "$TRAINER_CFG" \
    --output-dir "$DIR" \
    --model-dir "$MODEL_DIR" \
    --load-epoch "$EPOCHS" \
    --eval-only \
    TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST "$SAMPLES" \
    "${@:3}"
