#!/usr/bin/env bash
# Every run of the BayesianPrompt paper's tables for seeds SEEDS: base-to-new on the 11 datasets (Table 1), then
# ImageNet training evaluated on the 10 other datasets (Table 2) and the 4 ImageNet variants (Table 3); then the
# results tables (python -m clipbayes.results output). Finished runs are skipped and unfinished training runs
# resumed, so the sweep can simply be started again. A failing run is reported and the sweep goes on (a run that
# needs its model is then skipped with an error); the exit status is 1 if any failed.
#
# Usage:   scripts/bayesian_prompt/run_all.sh [KEY VALUE ...]   (the pairs go to every train.py call)
# Example: DATA=/data/coop scripts/bayesian_prompt/run_all.sh
#          DATA=/data/coop CFG=vit_b16_c4_ep10_batch1_ctxv1_cond scripts/bayesian_prompt/run_all.sh
# Environment: SEEDS ["1 2 3"]; DATA, CFG, PYTHON as in scripts/bayesian_prompt/settings.sh.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"
SEEDS=${SEEDS:-1 2 3}

for seed in $SEEDS; do
    run_base2new_and_transfer "$HERE" "$BASE2NEW_DATASETS" "$seed" "$@"
done
finish_sweep  # no extra options for the results command
