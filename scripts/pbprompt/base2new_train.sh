#!/usr/bin/env bash
# Base-to-new generalization, step 1 (PBPrompt, UAI'24): train on the base classes of DATASET with 16 shots per
# class. The final test of this run is the base accuracy.
#
# Usage:   scripts/pbprompt/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/pbprompt/base2new_train.sh dtd 1
# Environment: see scripts/pbprompt/settings.sh (DATA, CFG, EPOCHS, PYTHON).
# Output:  output/base2new/train_base/DATASET/shots_16/PBPrompt/CFG/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2+ "$#"
cd_repo_root
SHOTS=16
schedule train
run_base2new_train "$@"
