#!/usr/bin/env bash
# Base-to-new generalization, step 1 (LogitPrior, AISTATS'25): train on the base classes with 16 shots per class.
# The final test of this run is the base-class accuracy; base2new_test.sh gives the new-class accuracy.
# The paper's 10 datasets: caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd
# eurosat ucf101 (no imagenet), seeds 1-3.
#
# Usage:   scripts/logit_prior/base2new_train.sh DATASET SEED
# Example: DATA=/data/coop BASE=CoCoOp scripts/logit_prior/base2new_train.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets],
#   BASE [CoOp; CoCoOp, BayesianPrompt, MaPLe or APEX: picks CFG],
#   CFG [vit_b16_coop_c4_ep10_batch4_ctxv1, vit_b16_cocoop_c4_ep10_batch4_ctxv1 or
#   vit_b16_bayesianprompt_c4_ep10_batch4_ctxv1;
#   vit_b16_maple_... and vit_b16_apex_... for MaPLe and APEX; the config's TRAINER.LOGIT_PRIOR.BASE is what runs],
#   SHOTS [16], PYTHON [python].
# Output:  output/base2new/train_base/DATASET/shots_SHOTS/LogitPrior/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2 "$#"
cd_repo_root
base_cfg base2new
run_base2new_train "$@"
