#!/usr/bin/env bash
# Base-to-new generalization, step 2 (IVLP, CVPR'23): evaluate the base2new_train.sh model on the new classes.
# The new classes are the second half of the sorted labels, relabelled from 0; nothing is trained.
#
# Usage:   scripts/ivlp/base2new_test.sh DATASET SEED
# Example: DATA=/data/coop scripts/ivlp/base2new_test.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], SHOTS [16],
#   CFG [vit_b16_c2_ep5_batch4_2+2ctx; vit_b16_c2_ep5_batch4_4ctx_language_only: deep language prompting, no vision
#   tokens],
#   LOADEP [the config's MAX_EPOCH], SUB [new; "base" re-tests the base classes], PYTHON [python].
# Output:  output/base2new/test_SUB/DATASET/shots_SHOTS/IVLP/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=IVLP
CFG=${CFG:-vit_b16_c2_ep5_batch4_2+2ctx}
run_base2new_test "$@"
