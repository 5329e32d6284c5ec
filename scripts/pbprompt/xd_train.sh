#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1 (PBPrompt, UAI'24): train on all 1,000 ImageNet classes
# with 16 shots per class.
#
# Usage:   scripts/pbprompt/xd_train.sh SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/pbprompt/xd_train.sh 1
# Environment: see scripts/pbprompt/settings.sh (DATA, CFG, EPOCHS, PYTHON).
# Output:  output/imagenet/PBPrompt/CFG_16shots/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 1+ "$#"
cd_repo_root
SHOTS=16
schedule train
run_xd_train "$@"
