# Sourced by the DualViewPrompt scripts (not run): scripts/common.sh, defaults, the configs per dataset.
# Environment (defaults in brackets): DATA [/path/to/datasets], CFG [vit_b16_c4_ep50_batch32_ctxv1 on ImageNet and
#   for the ImageNet source model of cross-dataset / domain generalization, vit_b16_c4_ep200_batch32_ctxv1
#   elsewhere: CoOp's schedules in CoCoOp's base-to-new study], PYTHON [python].
# shellcheck shell=bash disable=SC2034
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../common.sh
source "${HERE}/../common.sh"
TRAINER=DualViewPrompt
SHOTS=16
SUB=new  # the test runs evaluate the new classes
DATASET_CFG_HINT=

BASE2NEW_DATASETS="imagenet ${XD_TARGETS}"

# dual_view_cfg DATASET: set CFG, unless set: the 50-epoch config on ImageNet, the 200-epoch one elsewhere.
dual_view_cfg() {
    if [[ $1 == imagenet ]]; then
        CFG=${CFG:-vit_b16_c4_ep50_batch32_ctxv1}
    else
        CFG=${CFG:-vit_b16_c4_ep200_batch32_ctxv1}
    fi
}
