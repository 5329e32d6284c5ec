#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 2 (APEX, arXiv 2311.15569): evaluate the ImageNet model of
# xd_train.sh on DATASET (all its classes). Cross-dataset: caltech101 oxford_pets stanford_cars oxford_flowers
# food101 fgvc_aircraft sun397 dtd eurosat ucf101; domain generalization: imagenetv2 imagenet_sketch imagenet_a
# imagenet_r.
#
# Usage:   scripts/apex/xd_test.sh DATASET SEED
# Example: DATA=/data/coop scripts/apex/xd_test.sh imagenet_sketch 1
# Environment (defaults in brackets): DATA [/path/to/datasets], SHOTS [16],
#   CFG [vit_b16_c4_ep10_batch4+2ctx_vision_1],
#   LOADEP [the config's MAX_EPOCH], PYTHON [python].
# Output:  output/evaluation/APEX/CFG_SHOTSshots/DATASET/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=APEX
CFG=${CFG:-vit_b16_c4_ep10_batch4+2ctx_vision_1}
TRAIN_FIRST="the xd_train.sh of APEX with seed $2"
run_xd_test "$@"
