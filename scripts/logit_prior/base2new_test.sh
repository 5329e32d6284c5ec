#!/usr/bin/env bash
# Base-to-new generalization, step 2 (LogitPrior, AISTATS'25): evaluate the base2new_train.sh model on the new
# classes. The new classes are the second half of the sorted labels, relabelled from 0; nothing is trained.
#
# Usage:   scripts/logit_prior/base2new_test.sh DATASET SEED
# Example: DATA=/data/coop BASE=CoCoOp scripts/logit_prior/base2new_test.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets],
#   BASE [CoOp; CoCoOp, BayesianPrompt, MaPLe or APEX: picks CFG],
#   CFG [vit_b16_coop_c4_ep10_batch4_ctxv1, vit_b16_cocoop_c4_ep10_batch4_ctxv1 or
#   vit_b16_bayesianprompt_c4_ep10_batch4_ctxv1], SHOTS [16], LOADEP [the config's MAX_EPOCH],
#   SUB [new; "base" re-tests the base classes], PYTHON [python].
# Output:  output/base2new/test_SUB/DATASET/shots_SHOTS/LogitPrior/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2 "$#"
cd_repo_root
base_cfg base2new
TRAIN_FIRST="BASE=${BASE} CFG=${CFG} scripts/logit_prior/base2new_train.sh $1 $2"
run_base2new_test "$@"
