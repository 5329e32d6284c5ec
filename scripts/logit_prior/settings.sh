# Sourced by the LogitPrior scripts (not run): scripts/common.sh, and the config that BASE picks.
# Environment (defaults in brackets): BASE [CoOp; CoCoOp, BayesianPrompt, MaPLe or APEX], CFG [BASE's config for the
#   protocol];
#   DATA, SHOTS, SUB, LOADEP, PYTHON as in scripts/common.sh.
# shellcheck shell=bash
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"
TRAINER=LogitPrior
BASE=${BASE:-CoOp}

# base_cfg base2new|xd: set CFG, unless set, to BASE's config for base-to-new or cross-dataset runs; stop (status 2)
# on an unknown BASE.
base_cfg() {
    case $1:$BASE in
        base2new:CoOp) CFG=${CFG:-vit_b16_coop_c4_ep10_batch4_ctxv1} ;;
        base2new:CoCoOp) CFG=${CFG:-vit_b16_cocoop_c4_ep10_batch4_ctxv1} ;;
        xd:CoOp) CFG=${CFG:-vit_b16_coop_c4_ep10_batch2_ctxv1} ;;
        xd:CoCoOp) CFG=${CFG:-vit_b16_cocoop_c4_ep10_batch1_ctxv1_xd} ;;
        base2new:BayesianPrompt | xd:BayesianPrompt) CFG=${CFG:-vit_b16_bayesianprompt_c4_ep10_batch4_ctxv1} ;;
        base2new:MaPLe | xd:MaPLe) CFG=${CFG:-vit_b16_maple_c4_ep10_batch4_ctxv1} ;;
        base2new:APEX | xd:APEX) CFG=${CFG:-vit_b16_apex_c2_ep10_batch4+2ctx_vision_1} ;;
        *) die "BASE must be CoOp, CoCoOp, BayesianPrompt, MaPLe or APEX, got '${BASE}'" ;;
    esac
}
