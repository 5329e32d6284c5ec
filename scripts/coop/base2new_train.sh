#!/usr/bin/env bash
# Base-to-new generalization, step 1, for CoOp (the CoOp baseline of CoCoOp's CVPR'22 paper): train on the base
# classes with 16 shots per class; the final test of this run is the base-class accuracy.
#
# Usage:   scripts/coop/base2new_train.sh DATASET SEED
# Example: DATA=/data/coop scripts/coop/base2new_train.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoOp],
#   CFG [vit_b16_ctxv1; vit_b16_ep50_ctxv1 on imagenet], SHOTS [16], PYTHON [python].
# Output:  output/base2new/train_base/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=${TRAINER:-CoOp}
coop_base2new_cfg "$1"
run_base2new_train "$@"
