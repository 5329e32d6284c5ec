#!/usr/bin/env bash
# Zero-shot CLIP (as CoOp's scripts/coop/zeroshot.sh): evaluate CLIP with hand-crafted prompts on the test set of
# DATASET; nothing is trained. CFG is a config in configs/trainers/ZeroshotCLIP/: rn50, rn101, vit_b32, vit_b16
# (the dataset's template, CoOp's ZeroshotCLIP) or the same with _ensemble (template ensemble, CoOp's ZeroshotCLIP2).
#
# Usage:   scripts/zsclip/zeroshot.sh DATASET CFG
# Example: DATA=/data/coop scripts/zsclip/zeroshot.sh oxford_pets vit_b16
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [ZeroshotCLIP], PYTHON [python].
# Output:  output/TRAINER/CFG/DATASET
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
DATASET=$1
CFG=$2
cd_repo_root
TRAINER=${TRAINER:-ZeroshotCLIP}
dataset_cfg "$DATASET"
trainer_cfg

DIR=output/${TRAINER}/${CFG}/${DATASET}
skip_if_evaluated "$DIR"
check_data
train_py "$DIR" "$DATASET" "" --eval-only
