#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 2 (CoCoOp, CVPR'22): evaluate the ImageNet model of
# xd_train.sh on DATASET (all its classes). Cross-dataset: caltech101 oxford_pets stanford_cars oxford_flowers
# food101 fgvc_aircraft sun397 dtd eurosat ucf101; domain generalization: imagenetv2 imagenet_sketch imagenet_a
# imagenet_r.
#
# Usage:   scripts/cocoop/xd_test.sh DATASET SEED
# Example: DATA=/data/coop scripts/cocoop/xd_test.sh imagenet_sketch 1
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoCoOp; CoOp also works],
#   CFG [vit_b16_c4_ep10_batch1_ctxv1; vit_b16_ep50_ctxv1 when TRAINER=CoOp], SHOTS [16],
#   LOADEP [the config's MAX_EPOCH], PYTHON [python].
# Output:  output/evaluation/TRAINER/CFG_SHOTSshots/DATASET/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=${TRAINER:-CoCoOp}
if [[ $TRAINER == CoOp ]]; then
    CFG=${CFG:-vit_b16_ep50_ctxv1}
fi
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
TRAIN_FIRST="the xd_train.sh of ${TRAINER} with seed $2"
run_xd_test "$@"
