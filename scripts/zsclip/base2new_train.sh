#!/usr/bin/env bash
# Base-to-new generalization for zero-shot CLIP, the "base" half: evaluate CLIP with hand-crafted prompts on the
# base classes, written where a trained method's base accuracy goes, so that scripts/sweep.sh and
# `python -m clipbayes.results` treat zero-shot CLIP like any trainer. Nothing is trained; the seed only names the
# folder (zero-shot results are identical for every seed, so SEEDS=1 is enough in a sweep).
#
# Usage:   scripts/zsclip/base2new_train.sh DATASET SEED
# Example: DATA=/data/coop scripts/zsclip/base2new_train.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [ZeroshotCLIP], CFG [vit_b16],
#   SHOTS [16, only in the folder name], PYTHON [python].
# Output:  output/base2new/train_base/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
cd_repo_root
TRAINER=${TRAINER:-ZeroshotCLIP}
CFG=${CFG:-vit_b16}
run_base2new_zeroshot train_base base "$@"
