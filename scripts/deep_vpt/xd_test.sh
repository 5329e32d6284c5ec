#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 2 (DeepVPT, ECCV'22): evaluate the ImageNet model of
# xd_train.sh on DATASET (all its classes). Cross-dataset: caltech101 oxford_pets stanford_cars oxford_flowers
# food101 fgvc_aircraft sun397 dtd eurosat ucf101; domain generalization: imagenetv2 imagenet_sketch imagenet_a
# imagenet_r.
#
# Usage:   scripts/deep_vpt/xd_test.sh DATASET SEED
# Example: DATA=/data/coop scripts/deep_vpt/xd_test.sh imagenet_sketch 1
# Environment (defaults in brackets): DATA [/path/to/datasets], SHOTS [16],
#   CFG [vit_b16_c2_ep5_batch4_4],
#   LOADEP [the config's MAX_EPOCH], PYTHON [python].
# Output:  output/evaluation/DeepVPT/CFG_SHOTSshots/DATASET/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=DeepVPT
CFG=${CFG:-vit_b16_c2_ep5_batch4_4}
TRAIN_FIRST="the xd_train.sh of DeepVPT with seed $2"
run_xd_test "$@"
