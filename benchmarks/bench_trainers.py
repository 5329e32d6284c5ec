#!/usr/bin/env python
"""Speed and memory of the prompt learners on one frozen CLIP with synthetic inputs (a benchmark, not a test).

Per configuration (each in its own Python process, so the CPU memory peaks do not mix) it measures
  * s/step    forward + backward + SGD step of the learner only (the rest of CLIP frozen), as
              ``PromptTrainer.forward_backward`` does it: median of --steps timed steps after --warmup untimed ones,
              for each text-pass variant of --variants, interleaved step by step in one process: ``shared`` (length
              buckets, and a prompt prefix the classes share encoded once: the default), ``bucketed`` (length
              buckets, whole prompts: the encoding before prefix sharing) and ``one_length`` (whole prompts padded
              to the longest: the encoding before length buckets);
  * floor     what the step would cost if each tower processed only the tokens actually needed: the distinct
              text tokens (every sampled prompt at its own length, EOT index + 1, a prefix shared by the classes of
              a prompt set counted once) times the measured seconds per text token
              (forward + backward to the input, on as many sequences all of the mean needed length, the cheapest
              of one pass or 2, 4, 8 chunks), plus the image tokens (patches + 1 per image) times the measured
              seconds per image token (forward);
              "step / floor" is the measured step of the first variant over it; with vision prompts (MaPLe, IVLP, DeepVPT,
              APEX) each image also carries its n_v prompt tokens and the image token is timed forward + backward
              to the prompts (as in the step);
  * tokens    text tokens per training step counted by a hook on the text encoder, four ways: 77 x sequences
              (official: full-length prompts), longest x sequences (one-length pass), bucketed, needed; and
              distinct (needed, with the prefix the classes of a prompt set share counted once per set);
  * img/s     test images per second, ``predict`` under ``torch.no_grad()`` inside one ``model.evaluation_cache``
              block per evaluation of --test-batches batches of --test-batch images, for each TEST.MC_DRAWS mode
              (--mc-draws), again with whole prompts (no prefix sharing) when --variants has shared and bucketed,
              and for CoOp built on the same CLIP in the same process (--reference), the evaluations
              interleaved --test-reps times: steady (median of batches 2..), whole evaluation, and the one-off
              extra of batch 1 (the once-per-evaluation text encodings), with the text sequences of batches 1 and 2;
  * peak mem  CUDA: ``torch.cuda.max_memory_allocated`` (train and test separately); CPU: growth of the peak resident
              set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over the process's peak after setup.
A treatment's rows (LogitPrior, ReBaPL) also give their s/step over that of their base learner alone: its step
timed in the same process (robust to load drift on a shared machine), and over the base configuration's own row;
and the base's img/s in the same evaluations. ReBaPL's rows run as in a later cycle (3 samples, 128 reference
images, SGHMC with its noise on) and give the memory of the 3 samples; their floor leaves out the reference images'
pass of a vision-prompt base.
``--official-names [DATASET]`` uses the first --classes real class names of DATASET (default imagenet) from
``benchmarks/classnames.json`` (sources in that file) instead of "class 0" ... "class C-1": the savings of the
length buckets depend on the name lengths.

``--compare-official-ove`` adds the OVE-PG objective alone (forward + backward): ours
(``clipbayes.objectives.ove_pg_loss``, O(B x C)) against a dense re-statement of the official algorithm written
in ``trainer_bench/ove_comparison.py`` (B x C x C difference tensors, a Python loop over the C classes, a dense
B(C-1) x B(C-1) precision matrix, solve and inverse per class). The dense one is measured at small C and its growth extrapolated to C = 1000.

``--compare-official-maple SRC`` adds one row: the official MaPLe training step (SRC: a checkout of
muzairkhattak/multimodal-prompt-learning; its CustomCLIP forward with the loss + backward + SGD step at its
config's tokens and depth) and ours on the same CLIP weights, inputs and starting prompts, interleaved step by step
in one process, and ours / official s/step (reported, not asserted). It needs --backbone vit-b16-random (the
official code hard-codes ViT-B/16 widths) and fp32; the runtime workarounds that let the official code run here
are listed in ``trainer_bench/official_maple.py``.

The parts are in the package ``benchmarks/trainer_bench/`` (its docstring lists them); this file is the entry point.

Examples
    python benchmarks/bench_trainers.py --backbone tiny-vit --classes 1000 --compare-official-ove
    python benchmarks/bench_trainers.py --classes 1000 --official-names --trainers CoOp BayesianPrompt-uncond
    python benchmarks/bench_trainers.py --backbone vit-b16-random --classes 10 --batch 2 --steps 2 \
        --trainers MaPLe --compare-official-maple /path/to/multimodal-prompt-learning
    python benchmarks/bench_trainers.py --backbone vit-b16-random --device cuda --prec bf16 --classes 1000 \
        --batch 4 --samples 10 --text-chunk 2000 --checkpointing --json bench_cuda.json
"""
from __future__ import annotations

import os
import sys

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.dirname(BENCHMARKS), BENCHMARKS):  # clipbayes, and trainer_bench (also when loaded by path)
    if path not in sys.path:
        sys.path.insert(0, path)

from trainer_bench.cli import main  # noqa: E402
from trainer_bench.configuration_row import run_isolated  # noqa: E402,F401  (benchmarks/bench_memory.py)
from trainer_bench.configurations import CONFIGS  # noqa: E402,F401  (benchmarks/gpu_check.py, the tests)

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
