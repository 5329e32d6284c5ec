#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1 (BayesianPrompt, ICCV'23): train on all 1,000 ImageNet
# classes with 16 shots per class (L 10, 10 epochs, as the paper).
#
# Usage:   scripts/bayesian_prompt/xd_train.sh SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/bayesian_prompt/xd_train.sh 1
# Environment: see scripts/bayesian_prompt/settings.sh (DATA, CFG, SAMPLES, EPOCHS, PYTHON).
# Output:  output/imagenet/BayesianPrompt/CFG_16shots/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

[[ $# -ge 1 ]] || usage
SEED=$1
cd "${HERE}/../.."
check_run imagenet "$SEED"
paper_setting imagenet

DIR=output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
if compgen -G "${DIR}/*/model.pth.tar-${EPOCHS}" > /dev/null; then
    echo "Results are available in ${DIR}. Skip this job"
    exit 0
fi
check_data
"$PYTHON" train.py \
    --root "$DATA" \
    --seed "$SEED" \
    --trainer "$TRAINER" \
    --dataset-config-file configs/datasets/imagenet.yaml \
    --config-file "$TRAINER_CFG" \
    --output-dir "$DIR" \
    DATASET.NUM_SHOTS "$SHOTS" \
    OPTIM.MAX_EPOCH "$EPOCHS" \
    TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN "$SAMPLES" \
    TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST "$SAMPLES" \
    "${@:2}"
