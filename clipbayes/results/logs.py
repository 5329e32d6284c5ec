"""Reading Dassl logs: which test result a log file gives.

Among a run folder's log files (``log.txt``, then ``log.txt-YYYY-MM-DD-HH-MM-SS`` written by later runs into the
same folder) the newest one that holds a complete test result wins. In a training log that is the last test-set
``=> result`` block after ``Finish training``; a training log without ``Finish training`` is unfinished and gives
nothing, even if it has test blocks from evaluations during training. A log that never trained (an ``--eval-only``
run) gives its last test-set block. Blocks printed while evaluating on the *val* split are never used.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

# Dassl prints "Finish training"; some forks print "Finished training".
_FINISH_RE = re.compile(r"^Finish(?:ed)? training\b")
_SPLIT_RE = re.compile(r"^Evaluate on the \*(\w+)\* set")
# Lines that only appear when a trainer trains (Dassl's before_train and its epoch progress lines).
_TRAINING_RE = re.compile(r"^(?:Initialize tensorboard|epoch \[\d+/\d+\])")
# "* accuracy: 91.2%", "* total: 1,000"; per-class lines ("* class: 3 (dog)\ttotal: ...") do not match.
_METRIC_RE = re.compile(r"^\* ([A-Za-z_][\w-]*): ([-+]?(?:\d[\d,]*)?\.?\d+(?:[eE][-+]?\d+)?)%?$")
_ARG_RE = re.compile(r"^(trainer|dataset_config_file|config_file|seed): (.*)$")
# A method that wraps another one says which when it builds its model: "LogitPrior around MaPLe; ...".
_BASE_RE = re.compile(r"^\w+ around (\w+)[;.]")


@dataclass
class LogResult:
    """The test result a log file gives: the ``* key: value`` lines of its chosen ``=> result`` block."""

    metrics: Dict[str, float]
    log_file: str
    kind: str  # "after training" or "eval-only"


@dataclass
class ParsedLog:
    result: Optional[LogResult]
    problem: Optional[str]  # why there is no result
    arguments: Dict[str, str] = field(default_factory=dict)


def parse_log(path: str, split_read: str = "test") -> ParsedLog:
    """Read one Dassl log file and pick its complete test result (see the module docstring for the rule); with
    ``split_read`` "val", its result on the validation split instead (``TEST.SPLIT val``)."""
    with open(path, "r", encoding="utf-8", errors="replace") as handle:
        lines = [line.strip() for line in handle]

    arguments: Dict[str, str] = {}
    finish_at: Optional[int] = None
    trained = False
    split: Optional[str] = None
    blocks: List[Tuple[int, Dict[str, float]]] = []  # (line index, metrics) of test-set result blocks
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == "=> result":
            metrics: Dict[str, float] = {}
            j = i + 1
            while j < len(lines):
                match = _METRIC_RE.match(lines[j])
                if match:
                    metrics.setdefault(match.group(1), float(match.group(2).replace(",", "")))
                elif not (lines[j] == "=> per-class result" or lines[j].startswith("* class:")):
                    break
                j += 1
            # no "Evaluate on" line at all: a custom test loop, accept it as a test result
            if split == split_read or (split is None and split_read == "test"):
                blocks.append((i, metrics))
            split = None
            i = j
            continue
        if _FINISH_RE.match(line):
            finish_at = i
        elif _TRAINING_RE.match(line):
            trained = True
        else:
            match = _SPLIT_RE.match(line)
            if match:
                split = match.group(1)
            elif not blocks and finish_at is None:
                match = _ARG_RE.match(line)
                if match:
                    arguments.setdefault(match.group(1), match.group(2).strip())
                elif _BASE_RE.match(line):
                    arguments.setdefault("base", _BASE_RE.match(line).group(1))
        i += 1

    name = os.path.basename(path)
    if finish_at is not None:
        after = [metrics for at, metrics in blocks if at > finish_at]
        if after:
            return ParsedLog(LogResult(after[-1], path, "after training"), None, arguments)
        return ParsedLog(None, f"{name}: no test result after 'Finish training' (TEST.NO_TEST?)", arguments)
    if trained:
        return ParsedLog(None, f"{name}: training did not finish (no 'Finish training')", arguments)
    if blocks:
        return ParsedLog(LogResult(blocks[-1][1], path, "eval-only"), None, arguments)
    return ParsedLog(None, f"{name}: no '=> result' block", arguments)
