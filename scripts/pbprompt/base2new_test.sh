#!/usr/bin/env bash
# Base-to-new generalization, step 2 (PBPrompt, UAI'24): evaluate the base2new_train.sh model of DATASET on its new
# classes (the class-name latents of the new classes come from the learned posterior networks). Nothing is trained.
#
# Usage:   scripts/pbprompt/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/pbprompt/base2new_test.sh dtd 1
# Environment: see scripts/pbprompt/settings.sh (DATA, CFG, EPOCHS, LOADEP, PYTHON).
# Output:  output/base2new/test_new/DATASET/shots_16/PBPrompt/CFG/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2+ "$#"
cd_repo_root
SHOTS=16
schedule test
run_base2new_test "$@"
