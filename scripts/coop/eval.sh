#!/usr/bin/env bash
# CoOp domain generalization / cross-dataset evaluation (IJCV'22): test the 16-shot ImageNet models of
#   scripts/coop/main.sh imagenet CFG end 16 16 False
# on DATASET (imagenetv2, imagenet_sketch, imagenet_a, imagenet_r, or any other dataset), for seeds 1, 2 and 3.
# CoOp uses CFG rn50_ep50 (or rn101_ep50, vit_b32_ep50, vit_b16_ep50) here.
#
# Usage:   scripts/coop/eval.sh DATASET CFG
# Example: DATA=/data/coop scripts/coop/eval.sh imagenet_sketch rn50_ep50
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoOp], SHOTS [16], NCTX [16],
#   CSC [False], CTP [end], LOADEP [the config's MAX_EPOCH], SEEDS ["1 2 3"], PYTHON [python].
# Output:  output/evaluation/TRAINER/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/DATASET/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 2 "$#"
DATASET=$1
CFG=$2
cd_repo_root
TRAINER=${TRAINER:-CoOp}
NCTX=${NCTX:-16}
CSC=${CSC:-False}
CTP=${CTP:-end}
SEEDS=${SEEDS:-1 2 3}

dataset_cfg "$DATASET"
trainer_cfg
load_epoch

SETTING=nctx${NCTX}_csc${CSC}_ctp${CTP}
TRAIN_FIRST="scripts/coop/main.sh imagenet ${CFG} ${CTP} ${NCTX} ${SHOTS} ${CSC}"
for SEED in $SEEDS; do
    check_seeds "$SEED"
    (  # a subshell: an evaluated run exits it (skip) and the loop goes on
        test_run "output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${SETTING}/${DATASET}/seed${SEED}" \
            "output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/${SETTING}/seed${SEED}" "$DATASET" "$SEED" \
            TRAINER.COOP.N_CTX "$NCTX" \
            TRAINER.COOP.CSC "$CSC" \
            TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP"
    )
done
