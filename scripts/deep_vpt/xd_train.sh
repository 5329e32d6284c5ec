#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1 (DeepVPT, ECCV'22): train on ImageNet, 16 shots
# per class, all 1,000 classes. xd_test.sh then evaluates this model on the other datasets and the ImageNet variants.
#
# Usage:   scripts/deep_vpt/xd_train.sh SEED
# Example: DATA=/data/coop scripts/deep_vpt/xd_train.sh 1
# Environment (defaults in brackets): DATA [/path/to/datasets], SHOTS [16], PYTHON [python],
#   CFG [vit_b16_c2_ep5_batch4_4].
# Output:  output/imagenet/DeepVPT/CFG_SHOTSshots/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 1 "$#"
cd_repo_root
TRAINER=DeepVPT
CFG=${CFG:-vit_b16_c2_ep5_batch4_4}
run_xd_train "$@"
