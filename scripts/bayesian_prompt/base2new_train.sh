#!/usr/bin/env bash
# Base-to-new generalization, step 1 (BayesianPrompt, ICCV'23): train on the base classes with 16 shots per class,
# with the paper's number of samples L and epochs for DATASET. The final test of this run is the base accuracy.
#
# Usage:   scripts/bayesian_prompt/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/bayesian_prompt/base2new_train.sh dtd 1
# Environment: see scripts/bayesian_prompt/settings.sh (DATA, CFG, SAMPLES, EPOCHS, PYTHON).
# Output:  output/base2new/train_base/DATASET/shots_16/BayesianPrompt/CFG/seedSEED
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

DIR=output/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
# Finished = the last epoch's checkpoint exists; an unfinished run in DIR is resumed by train.py.
if compgen -G "${DIR}/*/model.pth.tar-${EPOCHS}" > /dev/null; then
    echo "Results are available in ${DIR}. Skip this job"
    exit 0
fi
check_data
"$PYTHON" train.py \
    --root "$DATA" \
    --seed "$SEED" \
    --trainer "$TRAINER" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "$TRAINER_CFG" \
    --output-dir "$DIR" \
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES base \
    OPTIM.MAX_EPOCH "$EPOCHS" \
    TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN "$SAMPLES" \
    TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST "$SAMPLES" \
    "${@:3}"
