# shellcheck shell=bash
# Sourced by the scripts under scripts/ (not run): what they share. A trainer's script checks its arguments
# (require_args), goes to the repository root (cd_repo_root), sets its defaults (TRAINER, CFG, ...) and calls one of
# run_base2new_train, run_base2new_test, run_xd_train, run_xd_test or run_base2new_zeroshot.
#
# Variables the functions read:
#   DATA, SHOTS, SUB, PYTHON   from the environment, defaults /path/to/datasets, 16, new, python (set below)
#   TRAINER, CFG               set by the script
#   LOADEP                     the epoch a test run loads: the environment's, else the config's MAX_EPOCH
#   OPTS                       the script's own KEY VALUE pairs for train.py (an array, empty by default): after
#                              the protocol's pairs, before those of the command line
#   TRAIN_FIRST                what a test run without its model says to run first [the folder's training script]
#   DATASET_CFG_HINT           the end of the message for a missing dataset config [" (see configs/datasets/)"]
# Output folders: base2new training output/base2new/train_base/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED, its test
#   output/base2new/test_SUB/DATASET/..., xd training output/imagenet/TRAINER/CFG_SHOTSshots/seedSEED, its test
#   output/evaluation/TRAINER/CFG_SHOTSshots/DATASET/seedSEED.
# Skip rule: a training run is finished when DIR/*/model.pth.tar-EPOCHS exists (an unfinished one is resumed by
#   train.py), a test run when a DIR/log.txt* has a "* accuracy:" line.
# Exit status: 0 done or skipped, 1 no model to test, 2 a bad argument or setting, else train.py's.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    echo "${BASH_SOURCE[0]} is sourced by the scripts under scripts/, not run" >&2
    exit 2
fi

# The transfer targets of the ImageNet source model: CoOp's cross-dataset and domain-generalization lists.
# shellcheck disable=SC2034
XD_TARGETS="caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
# shellcheck disable=SC2034
DG_TARGETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"

DATA=${DATA:-/path/to/datasets}
SHOTS=${SHOTS:-16}
SUB=${SUB:-new}
PYTHON=${PYTHON:-python}
OPTS=()
TRAIN_FIRST=
DATASET_CFG_HINT=" (see configs/datasets/)"
FAILED=()
# The script that sourced this file (absolute), its folder's name, and the repository root.
SCRIPT=${BASH_SOURCE[${#BASH_SOURCE[@]} - 1]}
SCRIPT=$(cd "$(dirname "$SCRIPT")" && pwd)/$(basename "$SCRIPT")
SCRIPT_FOLDER=$(basename "$(dirname "$SCRIPT")")
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# die MESSAGE: print MESSAGE on stderr and stop with status 2 (a bad argument or setting).
die() {
    echo "$1" >&2
    exit 2
}

# print_usage: print the script's header comment (from its second line to the first line that is not a comment)
# as its usage message and stop with status 2.
print_usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SCRIPT" >&2
    exit 2
}

# require_args N COUNT, require_args N+ COUNT: print the usage unless COUNT (the script's $#) is N, at least N.
require_args() {
    if [[ $1 == *+ ]]; then
        (( $2 >= ${1%+} )) || print_usage
    else
        (( $2 == $1 )) || print_usage
    fi
}

cd_repo_root() {
    cd "$REPO_ROOT" || exit
}

# check_seed SEED: stop unless SEED is a non-negative integer. check_seeds "LIST": the same for a list (SEEDS).
check_seed() {
    [[ $1 =~ ^[0-9]+$ ]] || die "SEED must be a non-negative integer, got '$1'"
}

check_seeds() {
    local seed
    for seed in $1; do
        [[ $seed =~ ^[0-9]+$ ]] || die "Seeds must be non-negative integers, got '${seed}'"
    done
}

# dataset_cfg DATASET: set DATASET_CFG to its config file; stop if there is none.
dataset_cfg() {
    DATASET_CFG=configs/datasets/$1.yaml
    [[ -f $DATASET_CFG ]] || die "No dataset config ${DATASET_CFG}${DATASET_CFG_HINT}"
}

# trainer_cfg: set TRAINER_CFG to the config file of TRAINER and CFG; stop if there is none.
trainer_cfg() {
    TRAINER_CFG=configs/trainers/${TRAINER}/${CFG}.yaml
    [[ -f $TRAINER_CFG ]] || die "No trainer config ${TRAINER_CFG} (see configs/trainers/${TRAINER}/)"
}

# check_run DATASET SEED: check the seed, then set and check DATASET_CFG and TRAINER_CFG.
check_run() {
    check_seed "$2"
    dataset_cfg "$1"
    trainer_cfg
}

check_data() {
    [[ -d $DATA ]] || die "Dataset root '${DATA}' is not a directory: set DATA=/path/to/datasets"
}

# max_epoch_of FILE: print the (last) MAX_EPOCH of a yaml config; nothing if it sets none.
max_epoch_of() {
    sed -n 's/^[[:space:]]*MAX_EPOCH:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$1" | tail -n 1
}

# train_epochs: set EPOCHS, the last epoch of a training run: OPTIM.MAX_EPOCH of OPTS where OPTS sets it, else
# TRAINER_CFG's MAX_EPOCH; stop if neither does.
train_epochs() {
    local i
    EPOCHS=
    for ((i = 0; i + 1 < ${#OPTS[@]}; i += 2)); do
        [[ ${OPTS[i]} != OPTIM.MAX_EPOCH ]] || EPOCHS=${OPTS[i + 1]}
    done
    [[ -n $EPOCHS ]] || EPOCHS=$(max_epoch_of "$TRAINER_CFG")
    [[ -n $EPOCHS ]] || die "${TRAINER_CFG} sets no OPTIM.MAX_EPOCH"
}

# load_epoch: set LOADEP, the epoch a test run loads, unless set: TRAINER_CFG's MAX_EPOCH; stop if it sets none.
load_epoch() {
    LOADEP=${LOADEP:-$(max_epoch_of "$TRAINER_CFG")}
    [[ -n $LOADEP ]] || die "${TRAINER_CFG} sets no OPTIM.MAX_EPOCH: set LOADEP"
}

# is_trained DIR EPOCH: whether DIR holds the checkpoint of EPOCH. is_evaluated DIR: whether DIR's log has a result.
is_trained() {
    compgen -G "$1/*/model.pth.tar-$2" > /dev/null
}

is_evaluated() {
    grep -qs '^\* accuracy:' "$1"/log.txt*
}

# skip_if_finished DIR EPOCHS: stop (status 0) if the training run in DIR is finished; an unfinished one is
# resumed by train.py. skip_if_evaluated DIR: stop (status 0) if the test run in DIR has its result.
skip_if_finished() {
    if is_trained "$1" "$2"; then
        echo "Results are available in $1. Skip this job"
        exit 0
    fi
}

skip_if_evaluated() {
    if is_evaluated "$1"; then
        echo "Results are available in $1. Skip this job"
        exit 0
    fi
}

# require_model MODEL_DIR EPOCH COMMAND: stop (status 1) unless MODEL_DIR holds the checkpoint of EPOCH, saying to
# run COMMAND first.
require_model() {
    is_trained "$1" "$2" || { echo "No epoch-$2 model in $1: run $3 first" >&2; exit 1; }
}

# train_py DIR DATASET SEED [ARG ...]: run train.py for TRAINER_CFG on DATASET into DIR (without --seed if SEED is
# empty), followed by ARGs.
train_py() {
    local dir=$1 dataset=$2 seed=$3
    local seed_args=()
    shift 3
    [[ -z $seed ]] || seed_args=(--seed "$seed")
    "$PYTHON" train.py \
        --root "$DATA" \
        ${seed_args[@]+"${seed_args[@]}"} \
        --trainer "$TRAINER" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "$TRAINER_CFG" \
        --output-dir "$dir" \
        "$@"
}

# train_run DIR DATASET SEED [KEY VALUE ...]: train for EPOCHS (see train_epochs) into DIR unless finished.
train_run() {
    local dir=$1 dataset=$2 seed=$3
    shift 3
    skip_if_finished "$dir" "$EPOCHS"
    check_data
    train_py "$dir" "$dataset" "$seed" "$@"
}

# test_run DIR MODEL_DIR DATASET SEED [KEY VALUE ...]: evaluate the epoch-LOADEP model of MODEL_DIR into DIR, unless
# evaluated; without the model, stop (status 1) saying to run TRAIN_FIRST first.
test_run() {
    local dir=$1 model_dir=$2 dataset=$3 seed=$4
    shift 4
    skip_if_evaluated "$dir"
    require_model "$model_dir" "$LOADEP" "$TRAIN_FIRST"
    check_data
    train_py "$dir" "$dataset" "$seed" --model-dir "$model_dir" --load-epoch "$LOADEP" --eval-only "$@"
}

# coop_base2new_cfg DATASET: set CFG, unless set, to CoOp's base-to-new config (as in CoCoOp's paper):
# vit_b16_ep50_ctxv1 on imagenet, vit_b16_ctxv1 elsewhere.
coop_base2new_cfg() {
    if [[ $1 == imagenet ]]; then
        CFG=${CFG:-vit_b16_ep50_ctxv1}
    else
        CFG=${CFG:-vit_b16_ctxv1}
    fi
}

# run_base2new_train DATASET SEED [KEY VALUE ...]: base-to-new step 1, train on the base classes of DATASET.
run_base2new_train() {
    local dataset=$1 seed=$2
    shift 2
    check_run "$dataset" "$seed"
    train_epochs
    train_run "output/base2new/train_base/${dataset}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${seed}" "$dataset" "$seed" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base ${OPTS[@]+"${OPTS[@]}"} "$@"
}

# run_base2new_test DATASET SEED [KEY VALUE ...]: base-to-new step 2, evaluate the model of step 1 on the SUB
# classes.
run_base2new_test() {
    local dataset=$1 seed=$2
    shift 2
    check_run "$dataset" "$seed"
    load_epoch
    local run=${dataset}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${seed}
    TRAIN_FIRST=${TRAIN_FIRST:-scripts/${SCRIPT_FOLDER}/base2new_train.sh ${dataset} ${seed}}
    test_run "output/base2new/test_${SUB}/${run}" "output/base2new/train_base/${run}" "$dataset" "$seed" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$SUB" ${OPTS[@]+"${OPTS[@]}"} "$@"
}

# run_xd_train SEED [KEY VALUE ...]: cross-dataset step 1, train on all the ImageNet classes.
run_xd_train() {
    local seed=$1
    shift
    check_run imagenet "$seed"
    train_epochs
    train_run "output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${seed}" imagenet "$seed" \
        DATASET.NUM_SHOTS "$SHOTS" ${OPTS[@]+"${OPTS[@]}"} "$@"
}

# run_xd_test DATASET SEED [KEY VALUE ...]: cross-dataset step 2, evaluate the model of step 1 on all the classes
# of DATASET.
run_xd_test() {
    local dataset=$1 seed=$2
    shift 2
    check_run "$dataset" "$seed"
    load_epoch
    TRAIN_FIRST=${TRAIN_FIRST:-scripts/${SCRIPT_FOLDER}/xd_train.sh ${seed}}
    test_run "output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${dataset}/seed${seed}" \
        "output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${seed}" "$dataset" "$seed" \
        ${OPTS[@]+"${OPTS[@]}"} "$@"
}

# run_base2new_zeroshot FOLDER CLASSES DATASET SEED: evaluate TRAINER_CFG, untrained, on the CLASSES (base or new)
# of DATASET into output/base2new/FOLDER/..., where a trained method's base-to-new run writes.
run_base2new_zeroshot() {
    local folder=$1 classes=$2 dataset=$3 seed=$4
    check_run "$dataset" "$seed"
    local dir=output/base2new/${folder}/${dataset}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${seed}
    skip_if_evaluated "$dir"
    check_data
    train_py "$dir" "$dataset" "$seed" --eval-only DATASET.SUBSAMPLE_CLASSES "$classes"
}

# try_run SCRIPT [ARG ...]: bash SCRIPT ARGs; on failure add "SCRIPT ARGs" to FAILED and return 1.
try_run() {
    bash "$@" && return
    FAILED+=("$*")
    return 1
}

# run_base2new_and_transfer DIR DATASETS SEED [ARG ...]: base-to-new train + test of every dataset, then the
# ImageNet source model and its cross-dataset and domain-generalization tests ($XD_TARGETS $DG_TARGETS), with the
# method's scripts in DIR; failures are collected in FAILED and the rest goes on.
run_base2new_and_transfer() {
    local dir=$1 datasets=$2 seed=$3 dataset
    shift 3
    for dataset in $datasets; do
        try_run "${dir}/base2new_train.sh" "$dataset" "$seed" "$@"
        try_run "${dir}/base2new_test.sh" "$dataset" "$seed" "$@"
    done
    try_run "${dir}/xd_train.sh" "$seed" "$@"
    for dataset in $XD_TARGETS $DG_TARGETS; do
        try_run "${dir}/xd_test.sh" "$dataset" "$seed" "$@"
    done
}

# finish_sweep [RESULTS ARG ...]: print the tables of output/, then list the failed runs and exit 1 if any.
# shellcheck disable=SC2120  # the options are optional: some sweeps pass none
finish_sweep() {
    cd_repo_root && "$PYTHON" -m clipbayes.results output "$@"
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        printf 'Failed: %s\n' "${FAILED[@]}" >&2
        exit 1
    fi
}
