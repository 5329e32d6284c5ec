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
    run_base2new_and_transfer "$HERE" "$BASE2NEW_DATASETS" "$seed" "$@"
done
finish_sweep  # no extra options for the results command
