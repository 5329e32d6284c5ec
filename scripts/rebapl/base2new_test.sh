#!/usr/bin/env bash
# Base-to-new generalization, step 2 (ReBaPL, arXiv 2511.17339): evaluate the samples kept by base2new_train.sh
# on the new classes (SUB=base: on the base classes again).
#
# Usage:   scripts/rebapl/base2new_test.sh DATASET SEED
# Example: DATA=/data/coop BASE=CoCoOp scripts/rebapl/base2new_test.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], BASE [MaPLe; IVLP or CoCoOp: picks CFG],
#   CFG [BASE's config, as base2new_train.sh], SHOTS [16], SUB [new], LOADEP [the config's MAX_EPOCH: the
#   checkpoint holding every sample], PYTHON [python].
# Output:  output/base2new/test_SUB/DATASET/shots_SHOTS/ReBaPL/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2 "$#"
cd_repo_root
base_cfg
TRAIN_FIRST="BASE=${BASE} CFG=${CFG} scripts/rebapl/base2new_train.sh $1 $2"
run_base2new_test "$@"
