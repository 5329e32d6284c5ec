#!/usr/bin/env bash
# Base-to-new generalization, step 1 (ReBaPL, arXiv 2511.17339): sample the base learner's prompts on the base
# classes with 16 shots per class (cyclical SGHMC, one sample per cycle). The final test of this run is the
# base-class accuracy of the samples' ensemble; base2new_test.sh gives the new-class accuracy.
# The 11 datasets of CoOp's protocol: imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101
# fgvc_aircraft sun397 dtd eurosat ucf101, seeds 1-3.
#
# Usage:   scripts/rebapl/base2new_train.sh DATASET SEED
# Example: DATA=/data/coop BASE=CoCoOp scripts/rebapl/base2new_train.sh caltech101 1
# Environment (defaults in brackets): DATA [/path/to/datasets], BASE [MaPLe; IVLP or CoCoOp: picks CFG],
#   CFG [vit_b16_maple_c2_ep15_batch1_cyc5, vit_b16_ivlp_c2_ep15_batch1_cyc5 or vit_b16_cocoop_c4_ep20_batch1_cyc5;
#   the config's TRAINER.REBAPL.BASE is what runs], SHOTS [16], PYTHON [python].
# Output:  output/base2new/train_base/DATASET/shots_SHOTS/ReBaPL/CFG/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=settings.sh
source "${HERE}/settings.sh"

require_args 2 "$#"
cd_repo_root
base_cfg
run_base2new_train "$@"
