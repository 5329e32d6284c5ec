#!/usr/bin/env bash
# Base-to-new generalization, step 1 (BayesianPrompt, ICCV'23): train on the base classes with 16 shots per class,
# with the paper's number of samples L and epochs for DATASET. The final test of this run is the base accuracy.
#
# Usage:   scripts/bayesian_prompt/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/bayesian_prompt/base2new_train.sh dtd 1
# Environment: see scripts/bayesian_prompt/settings.sh (DATA, CFG, SAMPLES, EPOCHS, PYTHON).
# Output:  output/base2new/train_base/DATASET/shots_16/BayesianPrompt/CFG/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2+ "$#"
cd_repo_root
check_run "$1" "$2"  # before paper_setting: an unknown dataset is a missing config
paper_setting "$1" train
run_base2new_train "$@"
