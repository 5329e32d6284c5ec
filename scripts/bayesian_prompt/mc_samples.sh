#!/usr/bin/env bash
# Accuracy against the number of Monte Carlo samples L at test time (the BayesianPrompt paper's Table 6): evaluate
# the base2new_train.sh model of DATASET on its new classes once per L in MC_SAMPLES. Nothing is trained; finished
# evaluations are skipped. The figure: python -m clipbayes.results output --plots figures (mc_samples.png).
#
# Usage:   scripts/bayesian_prompt/mc_samples.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/bayesian_prompt/mc_samples.sh dtd 1
#          DATA=/data/coop MC_SAMPLES="1 10 100" scripts/bayesian_prompt/mc_samples.sh eurosat 2
# Environment: MC_SAMPLES ["1 2 5 10 20 40 80", Table 6's]; DATA, CFG, EPOCHS, PYTHON as in
#   scripts/bayesian_prompt/settings.sh.
# Output:  output/mc_samples/DATASET/shots_16/BayesianPrompt/CFG/L<L>/seedSEED, one folder per L
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"
MC_SAMPLES=${MC_SAMPLES:-1 2 5 10 20 40 80}

require_args 2+ "$#"
cd_repo_root
check_run "$1" "$2"
paper_setting "$1" test  # LOADEP: the epoch the training run ends at
for L in $MC_SAMPLES; do
    [[ $L =~ ^[1-9][0-9]*$ ]] || die "MC_SAMPLES must be positive integers, got '${L}'"
done
dataset=$1
seed=$2
shift 2
run=${dataset}/shots_${SHOTS}/${TRAINER}/${CFG}
TRAIN_FIRST="scripts/bayesian_prompt/base2new_train.sh ${dataset} ${seed}"
for L in $MC_SAMPLES; do
    # A subshell each: test_run ends its shell when the evaluation is already there.
    (test_run "output/mc_samples/${run}/L${L}/seed${seed}" "output/base2new/train_base/${run}/seed${seed}" \
        "$dataset" "$seed" DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES new \
        TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST "$L" "$@")
done
