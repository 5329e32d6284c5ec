#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 2, for CoOp (as in CoCoOp's paper):
# evaluate the ImageNet model of xd_train.sh on DATASET (all its classes). Cross-dataset: caltech101
# oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101; domain
# generalization: imagenetv2 imagenet_sketch imagenet_a imagenet_r.
#
# Usage:   scripts/coop/xd_test.sh DATASET SEED
# Example: DATA=/data/coop scripts/coop/xd_test.sh imagenet_sketch 1
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoOp],
#   CFG [vit_b16_ep50_ctxv1], SHOTS [16], LOADEP [the config's MAX_EPOCH], PYTHON [python].
# Output:  output/evaluation/TRAINER/CFG_SHOTSshots/DATASET/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=${TRAINER:-CoOp}
CFG=${CFG:-vit_b16_ep50_ctxv1}
TRAIN_FIRST="the xd_train.sh of ${TRAINER} with seed $2"
run_xd_test "$@"
