#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 1 (BayesianPrompt, ICCV'23): train on all 1,000 ImageNet
# classes with 16 shots per class (L 10, 10 epochs, as the paper).
#
# Usage:   scripts/bayesian_prompt/xd_train.sh SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/bayesian_prompt/xd_train.sh 1
# Environment: see scripts/bayesian_prompt/settings.sh (DATA, CFG, SAMPLES, EPOCHS, PYTHON).
# Output:  output/imagenet/BayesianPrompt/CFG_16shots/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 1+ "$#"
cd_repo_root
paper_setting imagenet train
run_xd_train "$@"
