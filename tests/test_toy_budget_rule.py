"""The toy world's budget rule (clipbayes/toyworld/protocol.py, docs/toyworld.md): every registered method gets the
same data, optimiser, schedule and batch; Monte Carlo draws are cut to the cap; a toy.yaml that sets anything else
is refused; and a training run logs what it spent (clipbayes/engine/budget.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from support import requires_dassl

pytestmark = requires_dassl


def _configs():
    from clipbayes.cli import build_parser, setup_cfg
    from clipbayes.registry import method_names
    from clipbayes.toyworld import protocol

    for name in method_names():
        argv = ["--trainer", name, *protocol.trainer_options(name), "DATASET.NAME", "ToyWorld"]
        yield name, setup_cfg(build_parser().parse_args(argv))


def test_every_method_gets_the_same_data_optimiser_schedule_and_batch():
    from clipbayes.registry import get_method
    from clipbayes.toyworld import protocol

    budget_keys = ("DATASET.NUM_SHOTS", "OPTIM.NAME", "OPTIM.LR", "OPTIM.MAX_EPOCH", "OPTIM.LR_SCHEDULER",
                   "OPTIM.WARMUP_EPOCH", "OPTIM.WARMUP_TYPE", "OPTIM.WARMUP_CONS_LR", "OPTIM.MOMENTUM",
                   "OPTIM.WEIGHT_DECAY", "DATALOADER.TRAIN_X.BATCH_SIZE", "DATALOADER.TRAIN_X.SAMPLER",
                   "INPUT.TRANSFORMS", "INPUT.SIZE")

    def value(cfg, key):
        node = cfg
        for part in key.split("."):
            node = node[part]
        return node

    seen = {}
    for name, cfg in _configs():
        seen[name] = tuple(value(cfg, key) for key in budget_keys)
        assert (cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == \
            (protocol.EPOCHS, protocol.LR, protocol.BATCH_SIZE), name
        for method_key, key in get_method(name).keys.items():
            if key.monte_carlo:
                drawn = cfg.TRAINER[get_method(name).node][method_key]
                assert drawn == min(key.default, protocol.MONTE_CARLO_CAP), (name, method_key, drawn)
    assert len(set(seen.values())) == 1, seen


def test_the_monte_carlo_cap_reaches_every_node_a_treatment_may_wrap():
    from clipbayes.toyworld import protocol

    options = dict(zip(*[iter(protocol.monte_carlo_options())] * 2))
    assert options == {"TRAINER.PBPROMPT.N_SAMPLES_TRAIN": "10", "TRAINER.PBPROMPT.N_SAMPLES_TEST": "10"}
    argv_of_logit_prior = protocol.trainer_options("LogitPrior")  # LogitPrior over PBPrompt reads PBPROMPT's keys
    assert "TRAINER.PBPROMPT.N_SAMPLES_TRAIN" in argv_of_logit_prior


@pytest.mark.parametrize("content, refused", [
    ("OPTIM:\n  MAX_EPOCH: 30\n", "OPTIM.MAX_EPOCH"),
    ("DATALOADER:\n  TRAIN_X:\n    BATCH_SIZE: 8\n", "DATALOADER.TRAIN_X.BATCH_SIZE"),
    ("TRAINER:\n  BAYESIAN_PROMPT:\n    N_SAMPLES_TRAIN: 2\n", "a number of Monte Carlo draws"),
    ("TRAINER:\n  COOP:\n    N_CTX: 4\n", "TRAINER.COOP.N_CTX"),  # another method's node
])
def test_a_toy_file_that_sets_a_budget_key_is_refused_with_the_rule(tmp_path, content, refused):
    from clipbayes.toyworld import protocol

    path = tmp_path / "toy.yaml"
    path.write_text(content)
    with pytest.raises(protocol.BudgetRuleError, match=refused) as err:
        protocol.check_toy_file("BayesianPrompt", str(path))
    assert "budget rule" in str(err.value) and str(path) in str(err.value)


def test_a_toy_file_may_set_its_own_keys_and_neutral_ones(tmp_path):
    from clipbayes.registry import method_names
    from clipbayes.toyworld import protocol

    path = tmp_path / "toy.yaml"
    path.write_text("TRAINER:\n  BAYESIAN_PROMPT:\n    KL_WEIGHT: 0.01\nDATALOADER:\n  TEST:\n    BATCH_SIZE: 16\n")
    protocol.check_toy_file("BayesianPrompt", str(path))
    for name in method_names():  # the shipped files follow the rule
        if protocol.toy_config_file(name):
            protocol.check_toy_file(name, protocol.toy_config_file(name))


class _Encoder(nn.Module):
    def forward(self, embeddings, eot):
        return embeddings.sum(1)


def test_budget_meter_counts_text_sequences_only_while_counting_and_round_trips_through_the_log(tmp_path,
                                                                                               monkeypatch):
    from clipbayes.engine import budget
    from clipbayes.modeling import text

    monkeypatch.setattr(text, "TextEncoder", _Encoder)
    model = nn.Module()
    model.encoder, model.again = _Encoder(), None
    meter = budget.BudgetMeter(model)
    model.encoder(torch.zeros(7, 3, 2), None)  # not counting: an evaluation pass
    meter.counting = True
    for _ in range(3):
        model.encoder(torch.zeros(50, 3, 2), None)
        meter.step(32)
    meter.counting = False
    line = meter.line(1, 10)
    assert line == ("Training budget: 3 optimiser steps, 96 training images, 150 text sequences encoded "
                    "(epochs 1-10)")
    meter.close()
    model.encoder(torch.zeros(5, 3, 2), None)
    assert meter.text_sequences == 150
    (tmp_path / "log.txt").write_text(f"epoch 1\n{line}\nFinish training\n")
    assert budget.read_budget(str(tmp_path)) == budget.Budget(3, 96, 150, 1, 10)
    (tmp_path / "untrained").mkdir()
    (tmp_path / "untrained" / "log.txt").write_text("ZeroshotCLIP has no parameters to train\n")
    assert budget.read_budget(str(tmp_path / "untrained")) is None


def test_the_documented_budgets_are_the_rules_for_every_trained_row():
    """docs/toyworld.md's budget table (benchmarks/toy_protocols.py --write-docs, read from the runs' logs): every
    trained row got the rule's steps and images, and every trained method has a row."""
    import os.path as osp
    import re
    import sys

    from clipbayes.registry import list_methods
    from clipbayes.toyworld import protocol
    from support import ROOT

    sys.path.insert(0, osp.join(ROOT, "benchmarks"))
    from generated_docs import read_block

    rows = re.findall(r"^\| ([^|]+?) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$",
                      read_block(osp.join(ROOT, "docs", "toyworld.md"), "toy_budget"), re.M)
    steps = protocol.EPOCHS * (50 * protocol.NUM_SHOTS // protocol.BATCH_SIZE)
    assert {name for name, *_ in rows} >= {m.name for m in list_methods() if m.trainable}
    for name, row_steps, images, *_ in rows:
        assert (int(row_steps.replace(",", "")), int(images.replace(",", ""))) == \
            (steps, steps * protocol.BATCH_SIZE), name
