#!/usr/bin/env bash
# Base-to-new generalization, step 2 (BayesianPrompt, ICCV'23): evaluate the base2new_train.sh model of DATASET on
# its new classes, with the same number of samples L. Nothing is trained.
#
# Usage:   scripts/bayesian_prompt/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/bayesian_prompt/base2new_test.sh dtd 1
# Environment: see scripts/bayesian_prompt/settings.sh (DATA, CFG, SAMPLES, EPOCHS, PYTHON).
# Output:  output/base2new/test_new/DATASET/shots_16/BayesianPrompt/CFG/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

[[ $# -ge 2 ]] || usage
DATASET=$1
SEED=$2
cd "${HERE}/../.."
check_run "$DATASET" "$SEED"
paper_setting "$DATASET"

COMMON_DIR=${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
MODEL_DIR=output/base2new/train_base/${COMMON_DIR}
DIR=output/base2new/test_new/${COMMON_DIR}
if grep -qs '^\* accuracy:' "${DIR}"/log.txt*; then
    echo "Results are available in ${DIR}. Skip this job"
    exit 0
fi
if ! compgen -G "${MODEL_DIR}/*/model.pth.tar-${EPOCHS}" > /dev/null; then
    echo "No epoch-${EPOCHS} model in ${MODEL_DIR}:" \
         "run scripts/bayesian_prompt/base2new_train.sh ${DATASET} ${SEED} first" >&2
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
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES new \
    TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST "$SAMPLES" \
    "${@:3}"
