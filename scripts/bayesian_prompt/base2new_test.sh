#!/usr/bin/env bash
# Base-to-new generalization, step 2 (BayesianPrompt, ICCV'23): evaluate the base2new_train.sh model of DATASET on
# its new classes, with the same number of samples L. Nothing is trained.
#
# Usage:   scripts/bayesian_prompt/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/bayesian_prompt/base2new_test.sh dtd 1
# Environment: see scripts/bayesian_prompt/settings.sh (DATA, CFG, SAMPLES, EPOCHS, PYTHON).
# Output:  output/base2new/test_new/DATASET/shots_16/BayesianPrompt/CFG/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2+ "$#"
cd_repo_root
check_run "$1" "$2"  # before paper_setting: an unknown dataset is a missing config
paper_setting "$1" test
run_base2new_test "$@"
