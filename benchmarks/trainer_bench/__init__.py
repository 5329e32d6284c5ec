"""The parts of ``benchmarks/bench_trainers.py`` (its docstring says what it measures; run that script).

    configurations          the benchmarked configurations and the config each one runs with
    building                the frozen CLIP, class names, prompt model, optimiser step and synthetic inputs
    measurement             timers, statistics and peak-memory counters
    token_counting          text/image tokens per pass and the measured cost of one token (the token floor)
    training_measurement    the training step: length-bucketed and one-length passes interleaved, the floor
    prediction_measurement  prediction per TEST.MC_DRAWS mode beside CoOp, one evaluation cache each
    configuration_row       one configuration's row, measured in its own Python process
    ove_comparison          the OVE-PG objective alone: ours against a dense re-statement of the official one
    official_maple          the official MaPLe training step beside ours, interleaved (--compare-official-maple)
    tables                  the printed tables
    cli                     the command line and the JSON output
"""
