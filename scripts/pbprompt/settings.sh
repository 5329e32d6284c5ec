# Sourced by the PBPrompt scripts (not run): scripts/common.sh and the defaults.
# Environment (defaults in brackets): DATA [/path/to/datasets], CFG [vit_b16_c4_ep10_batch1, the paper's setup;
#   rn50_c4_ep10_batch1 for RN50], EPOCHS [the config's MAX_EPOCH], PYTHON [python]. L (20) and b (4) come from the
#   config; trailing KEY VALUE pairs change them (TRAINER.PBPROMPT.N_SAMPLES_TRAIN 10).
# shellcheck shell=bash disable=SC2034
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../common.sh
source "${HERE}/../common.sh"
CFG=${CFG:-vit_b16_c4_ep10_batch1}
TRAINER=PBPrompt
SUB=new  # the base-to-new test runs evaluate the new classes
DATASET_CFG_HINT=

DATASETS="imagenet ${XD_TARGETS}"
FEWSHOT_SHOTS="1 2 4 8 16"

# schedule train|test: set EPOCHS (unless set: the config's MAX_EPOCH), LOADEP (a test run loads that epoch) and, for
# a training run, OPTS to pass it on.
schedule() {
    trainer_cfg
    EPOCHS=${EPOCHS:-$(max_epoch_of "$TRAINER_CFG")}
    [[ -n $EPOCHS ]] || die "${TRAINER_CFG} sets no OPTIM.MAX_EPOCH: set EPOCHS"
    LOADEP=${LOADEP:-$EPOCHS}
    [[ $1 == test ]] || OPTS=(OPTIM.MAX_EPOCH "$EPOCHS")
}
