#!/usr/bin/env bash
# Base-to-new sweep: for every DATASET and seed, run scripts/TRAINER_DIR/base2new_train.sh then base2new_test.sh,
# then print the results table (python -m clipbayes.results output/base2new --format markdown).
# TRAINER_DIR is a folder of scripts/ holding both scripts: coop, cocoop, zsclip, or a new method's folder.
# Runs whose results exist are skipped, unfinished training runs are resumed, so a sweep can simply be started
# again after an interruption. A failing run is reported and the sweep goes on; the exit status is 1 if any failed.
#
# Usage:   scripts/sweep.sh TRAINER_DIR [DATASET ...]
# Example: DATA=/data/coop scripts/sweep.sh cocoop
#          DATA=/data/coop SEEDS=1 scripts/sweep.sh zsclip caltech101 oxford_pets
# Datasets (default): imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397
#   dtd eurosat ucf101 (the 11 of CoCoOp's base-to-new table).
# Environment (defaults in brackets): SEEDS ["1 2 3"], PYTHON [python]; everything else (DATA, CFG, TRAINER, SHOTS,
#   ...) is passed on to the trainer's scripts.
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=common.sh
source "${HERE}/common.sh"
DATASET_CFG_HINT=

require_args 1+ "$#"
TRAINER_DIR=${1%/}
TRAINER_DIR=${TRAINER_DIR#scripts/}
shift
cd_repo_root

SEEDS=${SEEDS:-1 2 3}
export PYTHON
if [[ $# -gt 0 ]]; then
    DATASETS=("$@")
else
    DATASETS=(imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat
              ucf101)
fi

TRAIN_SCRIPT=scripts/${TRAINER_DIR}/base2new_train.sh
TEST_SCRIPT=scripts/${TRAINER_DIR}/base2new_test.sh
for script in "$TRAIN_SCRIPT" "$TEST_SCRIPT"; do
    [[ -f $script ]] ||
        die "No ${script}. TRAINER_DIR must be a folder of scripts/ with base2new_train.sh and base2new_test.sh"
done
for dataset in "${DATASETS[@]}"; do
    dataset_cfg "$dataset"
done
check_seeds "$SEEDS"

for dataset in "${DATASETS[@]}"; do
    for seed in $SEEDS; do
        echo "=== ${TRAINER_DIR}: ${dataset}, seed ${seed}"
        try_run "$TRAIN_SCRIPT" "$dataset" "$seed" || continue  # no test without its model
        try_run "$TEST_SCRIPT" "$dataset" "$seed" || true
    done
done

status=0
"$PYTHON" -m clipbayes.results output/base2new --format markdown || status=$?
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "${#FAILED[@]} run(s) failed (their logs are in their output folders):" >&2
    printf '  %s\n' "${FAILED[@]}" >&2
    exit 1
fi
exit "$status"
