#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 2 (LogitPrior, AISTATS'25): evaluate the ImageNet model
# of xd_train.sh on DATASET (all its classes). Cross-dataset: caltech101 oxford_pets stanford_cars oxford_flowers
# food101 fgvc_aircraft sun397 dtd eurosat ucf101; domain generalization: imagenetv2 imagenet_sketch imagenet_a
# imagenet_r.
#
# Usage:   scripts/logit_prior/xd_test.sh DATASET SEED
# Example: DATA=/data/coop BASE=CoCoOp scripts/logit_prior/xd_test.sh imagenet_sketch 1
# Environment (defaults in brackets): DATA [/path/to/datasets],
#   BASE [CoOp; CoCoOp, BayesianPrompt, MaPLe or APEX: picks CFG],
#   CFG [vit_b16_coop_c4_ep10_batch2_ctxv1, vit_b16_cocoop_c4_ep10_batch1_ctxv1_xd or
#   vit_b16_bayesianprompt_c4_ep10_batch4_ctxv1], SHOTS [16], LOADEP [the config's MAX_EPOCH], PYTHON [python].
# Output:  output/evaluation/LogitPrior/CFG_SHOTSshots/DATASET/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2 "$#"
cd_repo_root
base_cfg xd
TRAIN_FIRST="BASE=${BASE} CFG=${CFG} scripts/logit_prior/xd_train.sh $2"
run_xd_test "$@"
