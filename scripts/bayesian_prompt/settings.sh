# Sourced by the BayesianPrompt scripts (not run): defaults, the paper's per-dataset settings, argument checks.
# Environment (defaults in brackets): DATA [/path/to/datasets], CFG [vit_b16_c4_ep10_batch1_ctxv1, the official
#   unconditional setup], SAMPLES and EPOCHS [the paper's L and epochs for the dataset], PYTHON [python].
# shellcheck shell=bash disable=SC2034
DATA=${DATA:-/path/to/datasets}
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
PYTHON=${PYTHON:-python}
TRAINER=BayesianPrompt
SHOTS=16
TRAINER_CFG=configs/trainers/${TRAINER}/${CFG}.yaml

XD_TARGETS="caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
BASE2NEW_DATASETS="imagenet ${XD_TARGETS}"
DG_TARGETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"

# Print the calling script's header comment as its usage message and stop.
usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
}

# check_run DATASET SEED: stop (status 2) on a bad seed or a missing dataset or trainer config.
check_run() {
    [[ $2 =~ ^[0-9]+$ ]] || { echo "SEED must be a non-negative integer, got '$2'" >&2; exit 2; }
    [[ -f configs/datasets/$1.yaml ]] || { echo "No dataset config configs/datasets/$1.yaml" >&2; exit 2; }
    [[ -f $TRAINER_CFG ]] || { echo "No trainer config ${TRAINER_CFG} (see configs/trainers/${TRAINER}/)" >&2; exit 2; }
}

check_data() {
    [[ -d $DATA ]] || { echo "Dataset root '${DATA}' is not a directory: set DATA=/path/to/datasets" >&2; exit 2; }
}

# paper_setting DATASET: set SAMPLES (L, train and test) and EPOCHS as the official scripts (VPT.md), unless set.
paper_setting() {
    local samples epochs
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
        *) [[ -n ${SAMPLES:-} && -n ${EPOCHS:-} ]] && return
           echo "No paper setting for '$1' (known: ${BASE2NEW_DATASETS}): set SAMPLES and EPOCHS" >&2
           exit 2 ;;
    esac
    SAMPLES=${SAMPLES:-$samples}
    EPOCHS=${EPOCHS:-$epochs}
}
