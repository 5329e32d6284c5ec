#!/usr/bin/env bash
# Every run of the PBPrompt paper's four protocols for seeds SEEDS: few-shot learning on the 11 datasets with 1, 2,
# 4, 8 and 16 shots; base-to-new on the 11 datasets; ImageNet training evaluated on the 10 other datasets
# (cross-dataset) and the 4 ImageNet variants (domain generalization; its ImageNet training is the 16-shot few-shot
# run on ImageNet, same folder, so it is not run twice); then the tables with the published numbers
# (python -m clipbayes.results output --published). Finished runs are skipped and unfinished training runs resumed,
# so the sweep can simply be started again. A failing run is reported and the sweep goes on; the exit status is 1
# if any failed.
#
# Usage:   scripts/pbprompt/run_all.sh [KEY VALUE ...]   (the pairs go to every train.py call)
# Example: DATA=/data/coop scripts/pbprompt/run_all.sh
#          DATA=/data/coop CFG=rn50_c4_ep10_batch1 scripts/pbprompt/run_all.sh
# Environment: SEEDS ["1 2 3"]; DATA, CFG, PYTHON as in scripts/pbprompt/settings.sh.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"
SEEDS=${SEEDS:-1 2 3}

for seed in $SEEDS; do
    for dataset in $DATASETS; do
        for shots in $FEWSHOT_SHOTS; do
            try_run "${HERE}/fewshot_train.sh" "$dataset" "$shots" "$seed" "$@"
        done
    done
    run_base2new_and_transfer "$HERE" "$DATASETS" "$seed" "$@"
done
finish_sweep --published
