#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1 (DualViewPrompt): train on all 1,000 ImageNet classes
# with 16 shots per class. xd_test.sh then evaluates this model on the other datasets and the ImageNet variants.
#
# Usage:   scripts/dual_view/xd_train.sh SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/dual_view/xd_train.sh 1
# Environment: see scripts/dual_view/settings.sh (DATA, CFG, PYTHON).
# Output:  output/imagenet/DualViewPrompt/CFG_16shots/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 1+ "$#"
cd_repo_root
dual_view_cfg imagenet
run_xd_train "$@"
