#!/usr/bin/env bash
# Base-to-new generalization, step 2, for CoOp: evaluate the base2new_train.sh model on the new classes (the second
# half of the sorted labels, relabelled from 0); nothing is trained.
#
# Usage:   scripts/coop/base2new_test.sh DATASET SEED
# Example: DATA=/data/coop scripts/coop/base2new_test.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoOp],
#   CFG [vit_b16_ctxv1; vit_b16_ep50_ctxv1 on imagenet], SHOTS [16], LOADEP [the config's MAX_EPOCH],
#   SUB [new; "base" re-tests the base classes], PYTHON [python].
# Output:  output/base2new/test_SUB/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=${TRAINER:-CoOp}
coop_base2new_cfg "$1"
run_base2new_test "$@"
