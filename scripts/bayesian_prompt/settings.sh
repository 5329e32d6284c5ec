# Sourced by the BayesianPrompt scripts (not run): scripts/common.sh, defaults, the paper's per-dataset settings.
# Environment (defaults in brackets): DATA [/path/to/datasets], CFG [vit_b16_c4_ep10_batch1_ctxv1, the official
#   unconditional setup], SAMPLES and EPOCHS [the paper's L and epochs for the dataset], PYTHON [python].
# shellcheck shell=bash disable=SC2034
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../common.sh
source "${HERE}/../common.sh"
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
TRAINER=BayesianPrompt
SHOTS=16
SUB=new  # the test runs evaluate the new classes
DATASET_CFG_HINT=

BASE2NEW_DATASETS="imagenet ${XD_TARGETS}"

# paper_setting DATASET train|test: set SAMPLES (L, train and test) and EPOCHS as the official scripts (VPT.md),
# unless set; LOADEP (a test run loads the last epoch); and OPTS, the pairs of a training or a test run.
paper_setting() {
    local samples='' epochs=''
    case $1 in
        caltech101)     samples=20; epochs=20 ;;
        oxford_pets)    samples=40; epochs=20 ;;
        stanford_cars)  samples=20; epochs=40 ;;
        oxford_flowers) samples=10; epochs=40 ;;
        food101)        samples=20; epochs=20 ;;
        fgvc_aircraft)  samples=10; epochs=10 ;;
        sun397)         samples=20; epochs=10 ;;
        dtd)            samples=40; epochs=10 ;;
        eurosat)        samples=20; epochs=60 ;;
        ucf101)         samples=5;  epochs=20 ;;
        imagenet)       samples=10; epochs=10 ;;
        *) [[ -n ${SAMPLES:-} && -n ${EPOCHS:-} ]] ||
               die "No paper setting for '$1' (known: ${BASE2NEW_DATASETS}): set SAMPLES and EPOCHS" ;;
    esac
    SAMPLES=${SAMPLES:-$samples}
    EPOCHS=${EPOCHS:-$epochs}
    LOADEP=$EPOCHS
    if [[ $2 == train ]]; then
        OPTS=(OPTIM.MAX_EPOCH "$EPOCHS"
              TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN "$SAMPLES"
              TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST "$SAMPLES")
    else
        OPTS=(TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST "$SAMPLES")
    fi
}
