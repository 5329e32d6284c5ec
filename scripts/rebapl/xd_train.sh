#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1 (ReBaPL, arXiv 2511.17339): sample the base learner's
# prompts on ImageNet, 16 shots per class, all 1000 classes. The official code ships no cross-dataset config: this
# runs BASE's base-to-new config (said in docs/methods/rebapl.md).
#
# Usage:   scripts/rebapl/xd_train.sh SEED
# Example: DATA=/data/coop scripts/rebapl/xd_train.sh 1
# Environment (defaults in brackets): DATA [/path/to/datasets], BASE [MaPLe; IVLP or CoCoOp: picks CFG],
#   CFG [BASE's config, as base2new_train.sh], SHOTS [16], PYTHON [python].
# Output:  output/imagenet/ReBaPL/CFG_SHOTSshots/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 1 "$#"
cd_repo_root
base_cfg
run_xd_train "$@"
