#!/usr/bin/env bash
# CoOp few-shot learning (IJCV'22): train and test on DATASET with SHOTS images per class, for seeds 1, 2 and 3.
# CoOp's settings: CFG rn50_ep50 for 1-2 shots, rn50_ep100 for 4-8 shots, rn50 (200 epochs) for 16 shots (vit_b16*
# likewise); CTP end or middle; NCTX 16 (or 8, 4); CSC False (unified context) or True (class-specific).
#
# Usage:   scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC
# Example: DATA=/data/coop scripts/coop/main.sh caltech101 rn50_ep50 end 16 1 False
# Environment (defaults in brackets): DATA [/path/to/datasets], TRAINER [CoOp], SEEDS ["1 2 3"], PYTHON [python].
# Output:  output/DATASET/TRAINER/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seedSEED
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"

require_args 6 "$#"
DATASET=$1
CFG=$2    # config file name in configs/trainers/TRAINER/
CTP=$3    # class token position: end, middle or front
NCTX=$4   # number of context tokens
SHOTS=$5  # shots per class: 1, 2, 4, 8 or 16
CSC=$6    # class-specific context: False or True
cd_repo_root
TRAINER=${TRAINER:-CoOp}
SEEDS=${SEEDS:-1 2 3}

dataset_cfg "$DATASET"
trainer_cfg
[[ $CTP =~ ^(end|middle|front)$ ]] || die "CTP must be end, middle or front, got '${CTP}'"
[[ $NCTX =~ ^[1-9][0-9]*$ ]] || die "NCTX must be a positive integer, got '${NCTX}'"
[[ $SHOTS =~ ^[1-9][0-9]*$ ]] || die "SHOTS must be a positive integer, got '${SHOTS}'"
[[ $CSC =~ ^(True|False)$ ]] || die "CSC must be True or False, got '${CSC}'"
train_epochs

for SEED in $SEEDS; do
    check_seeds "$SEED"
    (  # a subshell: a finished run exits it (skip) and the loop goes on
        train_run "output/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}" \
            "$DATASET" "$SEED" \
            TRAINER.COOP.N_CTX "$NCTX" \
            TRAINER.COOP.CSC "$CSC" \
            TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP" \
            DATASET.NUM_SHOTS "$SHOTS"
    )
done
