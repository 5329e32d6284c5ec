#!/usr/bin/env bash
# Base-to-new generalization, step 2 (DualViewPrompt): evaluate the base2new_train.sh model of DATASET on its new
# classes (their hand-crafted views are encoded for them). Nothing is trained.
#
# Usage:   scripts/dual_view/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/dual_view/base2new_test.sh dtd 1 TRAINER.DUAL_VIEW.PREDICTION ensemble
# Environment: see scripts/dual_view/settings.sh (DATA, CFG, PYTHON); LOADEP [the config's MAX_EPOCH].
# Output:  output/base2new/test_new/DATASET/shots_16/DualViewPrompt/CFG/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2+ "$#"
cd_repo_root
dual_view_cfg "$1"
run_base2new_test "$@"
