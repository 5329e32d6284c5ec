#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 2 (ReBaPL, arXiv 2511.17339): evaluate the ImageNet samples
# of xd_train.sh on DATASET (all its classes). Cross-dataset: caltech101 oxford_pets stanford_cars oxford_flowers
# food101 fgvc_aircraft sun397 dtd eurosat ucf101; domain generalization: imagenetv2 imagenet_sketch imagenet_a
# imagenet_r.
#
# Usage:   scripts/rebapl/xd_test.sh DATASET SEED
# Example: DATA=/data/coop scripts/rebapl/xd_test.sh imagenet_sketch 1
# Environment (defaults in brackets): DATA [/path/to/datasets], BASE [MaPLe; IVLP or CoCoOp: picks CFG],
#   CFG [BASE's config, as base2new_train.sh], SHOTS [16], LOADEP [the config's MAX_EPOCH], PYTHON [python].
# Output:  output/evaluation/ReBaPL/CFG_SHOTSshots/DATASET/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2 "$#"
cd_repo_root
base_cfg
TRAIN_FIRST="BASE=${BASE} CFG=${CFG} scripts/rebapl/xd_train.sh $2"
run_xd_test "$@"
