#!/usr/bin/env bash
# Base-to-new generalization, step 2 (APEX, arXiv 2311.15569): evaluate the base2new_train.sh model on the new classes.
# The new classes are the second half of the sorted labels, relabelled from 0; nothing is trained.
#
# Usage:   scripts/apex/base2new_test.sh DATASET SEED
# Example: DATA=/data/coop scripts/apex/base2new_test.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], SHOTS [16],
#   CFG [vit_b16_c4_ep10_batch4+2ctx_vision_1],
#   LOADEP [the config's MAX_EPOCH], SUB [new; "base" re-tests the base classes], PYTHON [python].
# Output:  output/base2new/test_SUB/DATASET/shots_SHOTS/APEX/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=APEX
CFG=${CFG:-vit_b16_c4_ep10_batch4+2ctx_vision_1}
run_base2new_test "$@"
