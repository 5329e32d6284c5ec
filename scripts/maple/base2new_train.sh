#!/usr/bin/env bash
# Base-to-new generalization, step 1 (MaPLe, CVPR'23): train on the base classes with 16 shots per class.
# The final test of this run is the base-class accuracy; base2new_test.sh gives the new-class accuracy.
#
# Usage:   scripts/maple/base2new_train.sh DATASET SEED
# Example: DATA=/data/coop scripts/maple/base2new_train.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], SHOTS [16], PYTHON [python],
#   CFG [vit_b16_c2_ep5_batch4_2ctx].
# Output:  output/base2new/train_base/DATASET/shots_SHOTS/MaPLe/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=MaPLe
CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx}
run_base2new_train "$@"
