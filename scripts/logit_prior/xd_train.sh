#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1 (LogitPrior, AISTATS'25): train on ImageNet, 16 shots
# per class, all 1,000 classes (the paper: seed 1). xd_test.sh then evaluates this model on the other datasets and
# the ImageNet variants.
#
# Usage:   scripts/logit_prior/xd_train.sh SEED
# Example: DATA=/data/coop BASE=CoCoOp scripts/logit_prior/xd_train.sh 1
# Environment (defaults in brackets): DATA [/path/to/datasets],
#   BASE [CoOp; CoCoOp, BayesianPrompt, MaPLe or APEX: picks CFG],
#   CFG [vit_b16_coop_c4_ep10_batch2_ctxv1, vit_b16_cocoop_c4_ep10_batch1_ctxv1_xd or
#   vit_b16_bayesianprompt_c4_ep10_batch4_ctxv1;
#   vit_b16_maple_... and vit_b16_apex_... for MaPLe and APEX; the config's TRAINER.LOGIT_PRIOR.BASE is what runs],
#   SHOTS [16], PYTHON [python].
# Output:  output/imagenet/LogitPrior/CFG_SHOTSshots/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 1 "$#"
cd_repo_root
base_cfg xd
run_xd_train "$@"
