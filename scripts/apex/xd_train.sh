#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1 (APEX, arXiv 2311.15569): train on ImageNet, 16 shots
# per class, all 1,000 classes. xd_test.sh then evaluates this model on the other datasets and the ImageNet variants.
#
# Usage:   scripts/apex/xd_train.sh SEED
# Example: DATA=/data/coop scripts/apex/xd_train.sh 1
# Environment (defaults in brackets): DATA [/path/to/datasets], SHOTS [16], PYTHON [python],
#   CFG [vit_b16_c4_ep10_batch4+2ctx_vision_1].
# Output:  output/imagenet/APEX/CFG_SHOTSshots/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 1 "$#"
cd_repo_root
TRAINER=APEX
CFG=${CFG:-vit_b16_c4_ep10_batch4+2ctx_vision_1}
run_xd_train "$@"
