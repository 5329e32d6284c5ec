#!/usr/bin/env bash
# Base-to-new generalization, step 1 (DualViewPrompt): train on the base classes with 16 shots per class. The final
# test of this run is the base accuracy; base2new_test.sh gives the new-class accuracy.
#
# Usage:   scripts/dual_view/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/dual_view/base2new_train.sh dtd 1 TRAINER.DUAL_VIEW.MIXUP bank
# Environment: see scripts/dual_view/settings.sh (DATA, CFG, PYTHON).
# Output:  output/base2new/train_base/DATASET/shots_16/DualViewPrompt/CFG/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2+ "$#"
cd_repo_root
dual_view_cfg "$1"
run_base2new_train "$@"
