#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1 (CoCoOp, CVPR'22): train on ImageNet, 16 shots per
# class, all 1,000 classes. xd_test.sh then evaluates this model on the other datasets and the ImageNet variants.
#
# Usage:   scripts/cocoop/xd_train.sh SEED
# Example: DATA=/data/coop scripts/cocoop/xd_train.sh 1
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoCoOp; CoOp also works],
#   CFG [vit_b16_c4_ep10_batch1_ctxv1; vit_b16_ep50_ctxv1 when TRAINER=CoOp], SHOTS [16], PYTHON [python].
# Output:  output/imagenet/TRAINER/CFG_SHOTSshots/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 1 "$#"
cd_repo_root
TRAINER=${TRAINER:-CoCoOp}
if [[ $TRAINER == CoOp ]]; then
    CFG=${CFG:-vit_b16_ep50_ctxv1}
fi
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
run_xd_train "$@"
