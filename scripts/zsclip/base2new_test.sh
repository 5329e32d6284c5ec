#!/usr/bin/env bash
# Base-to-new generalization for zero-shot CLIP, the "new" half: evaluate CLIP with hand-crafted prompts on the
# new classes (the second half of the sorted labels, relabelled from 0). Nothing is trained; the seed only names
# the folder.
#
# Usage:   scripts/zsclip/base2new_test.sh DATASET SEED
# Example: DATA=/data/coop scripts/zsclip/base2new_test.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [ZeroshotCLIP], CFG [vit_b16],
#   SHOTS [16, only in the folder name], SUB [new], PYTHON [python].
# Output:  output/base2new/test_SUB/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=${TRAINER:-ZeroshotCLIP}
CFG=${CFG:-vit_b16}
run_base2new_zeroshot "test_${SUB}" "$SUB" "$@"
