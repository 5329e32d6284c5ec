#!/usr/bin/env bash
# Few-shot learning (PBPrompt, UAI'24): train on all the classes of DATASET with SHOTS images per class (the paper:
# 1, 2, 4, 8, 16), then test on its test set (the final test of the run is the result).
#
# Usage:   scripts/pbprompt/fewshot_train.sh DATASET SHOTS SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/pbprompt/fewshot_train.sh dtd 4 1
# Environment: see scripts/pbprompt/settings.sh (DATA, CFG, EPOCHS, PYTHON).
# Output:  output/DATASET/PBPrompt/CFG_SHOTSshots/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 3+ "$#"
cd_repo_root
DATASET=$1
SHOTS=$2
SEED=$3
shift 3
[[ $SHOTS =~ ^[1-9][0-9]*$ ]] || die "SHOTS must be a positive integer, got '${SHOTS}'"
check_run "$DATASET" "$SEED"
schedule train
train_epochs
train_run "output/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}" "$DATASET" "$SEED" \
    DATASET.NUM_SHOTS "$SHOTS" "${OPTS[@]}" "$@"
