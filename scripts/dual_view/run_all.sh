#!/usr/bin/env bash
# Every DualViewPrompt experiment for seeds 1-3: base-to-new on the 11 datasets, then the ImageNet model and its
# cross-dataset and domain-generalization tests, then the tables. Finished runs are skipped, so it can be restarted.
#
# Usage:   scripts/dual_view/run_all.sh [KEY VALUE ...]
# Example: DATA=/data/coop scripts/dual_view/run_all.sh
#          DATA=/data/coop scripts/dual_view/run_all.sh TRAINER.DUAL_VIEW.MIXUP bank
# Environment: SEEDS ["1 2 3"]; DATA, CFG, PYTHON as in scripts/dual_view/settings.sh.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"
SEEDS=${SEEDS:-1 2 3}
check_seeds "$SEEDS"

for seed in $SEEDS; do
    for dataset in $BASE2NEW_DATASETS; do
        try_run "${HERE}/base2new_train.sh" "$dataset" "$seed" "$@"
        try_run "${HERE}/base2new_test.sh" "$dataset" "$seed" "$@"
    done
    try_run "${HERE}/xd_train.sh" "$seed" "$@"
    for dataset in $XD_TARGETS $DG_TARGETS; do
        try_run "${HERE}/xd_test.sh" "$dataset" "$seed" "$@"
    done
done
cd_repo_root && "$PYTHON" -m clipbayes.results output
if [[ ${#FAILED[@]} -gt 0 ]]; then
    printf 'Failed: %s\n' "${FAILED[@]}" >&2
    exit 1
fi
