#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 2 (BayesianPrompt, ICCV'23): evaluate the ImageNet model
# of xd_train.sh on DATASET (all its classes), with the same L. Cross-dataset: caltech101 oxford_pets stanford_cars
# oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101; domain generalization: imagenetv2
# imagenet_sketch imagenet_a imagenet_r.
#
# Usage:   scripts/bayesian_prompt/xd_test.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/bayesian_prompt/xd_test.sh imagenet_sketch 1
# Environment: see scripts/bayesian_prompt/settings.sh (DATA, CFG, SAMPLES, EPOCHS, PYTHON).
# Output:  output/evaluation/BayesianPrompt/CFG_16shots/DATASET/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2+ "$#"
cd_repo_root
paper_setting imagenet test
run_xd_test "$@"
