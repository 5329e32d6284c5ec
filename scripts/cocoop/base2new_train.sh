#!/usr/bin/env bash
# Base-to-new generalization, step 1 (CoCoOp, CVPR'22): train on the base classes with 16 shots per class.
# The final test of this run is the base-class accuracy; base2new_test.sh gives the new-class accuracy.
#
# Usage:   scripts/cocoop/base2new_train.sh DATASET SEED
# Example: DATA=/data/coop scripts/cocoop/base2new_train.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoCoOp], CFG [vit_b16_c4_ep10_batch1_ctxv1],
#   SHOTS [16], PYTHON [python]. TRAINER=CoOp uses vit_b16_ctxv1 (vit_b16_ep50_ctxv1 on ImageNet), as CoCoOp's paper.
# Output:  output/base2new/train_base/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=${TRAINER:-CoCoOp}
if [[ $TRAINER == CoOp ]]; then
    coop_base2new_cfg "$1"
fi
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
run_base2new_train "$@"
