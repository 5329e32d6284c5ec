# Sourced by the ReBaPL scripts (not run): scripts/common.sh, and the config that BASE picks.
# Environment (defaults in brackets): BASE [MaPLe; IVLP or CoCoOp], CFG [BASE's config, the official values; for
#   another base learner, name a config whose TRAINER.REBAPL.BASE is that learner];
#   DATA, SHOTS, SUB, LOADEP, PYTHON as in scripts/common.sh.
# shellcheck shell=bash
HERE=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=../common.sh
source "${HERE}/../common.sh"
TRAINER=ReBaPL
BASE=${BASE:-MaPLe}

# base_cfg: set CFG, unless set, to BASE's config (the same for base-to-new, cross-dataset and domain
# generalization: the official code ships one config per base); stop (status 2) on a BASE without one.
base_cfg() {
    case $BASE in
        MaPLe) CFG=${CFG:-vit_b16_maple_c2_ep15_batch1_cyc5} ;;
        IVLP) CFG=${CFG:-vit_b16_ivlp_c2_ep15_batch1_cyc5} ;;
        CoCoOp) CFG=${CFG:-vit_b16_cocoop_c4_ep20_batch1_cyc5} ;;
        *) [[ -n ${CFG:-} ]] || die "BASE must be MaPLe, IVLP or CoCoOp (or set CFG to a config of \
configs/trainers/ReBaPL/ for '${BASE}')" ;;
    esac
}
