#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1, for CoOp (as in CoCoOp's paper): train
# on ImageNet, 16 shots per class, all 1,000 classes. xd_test.sh then evaluates this model on the
# other datasets and the ImageNet variants. (CoOp's own DG protocol is main.sh + eval.sh.)
#
# Usage:   scripts/coop/xd_train.sh SEED
# Example: DATA=/data/coop scripts/coop/xd_train.sh 1
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoOp],
#   CFG [vit_b16_ep50_ctxv1], SHOTS [16], PYTHON [python].
# Output:  output/imagenet/TRAINER/CFG_SHOTSshots/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 1 "$#"
cd_repo_root
TRAINER=${TRAINER:-CoOp}
CFG=${CFG:-vit_b16_ep50_ctxv1}
run_xd_train "$@"
