#!/usr/bin/env bash
# Cross-dataset transfer and domain generalization, step 2 (PBPrompt, UAI'24): evaluate the ImageNet model of
# xd_train.sh on DATASET (all its classes). Cross-dataset: caltech101 oxford_pets stanford_cars oxford_flowers
# food101 fgvc_aircraft sun397 dtd eurosat ucf101; domain generalization: imagenetv2 imagenet_sketch imagenet_a
# imagenet_r.
#
# Usage:   scripts/pbprompt/xd_test.sh DATASET SEED [KEY VALUE ...]
# Example: DATA=/data/coop scripts/pbprompt/xd_test.sh imagenet_sketch 1
# Environment: see scripts/pbprompt/settings.sh (DATA, CFG, EPOCHS, LOADEP, PYTHON).
# Output:  output/evaluation/PBPrompt/CFG_16shots/DATASET/seedSEED
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2+ "$#"
cd_repo_root
SHOTS=16
schedule test
run_xd_test "$@"
