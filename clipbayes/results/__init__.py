"""Results of a sweep's output tree: ``python -m clipbayes.results OUTPUT_ROOT [options]`` (``clipbayes-results``).

The command finds every ``seed<N>`` folder under OUTPUT_ROOT, reads the test result from the Dassl log in it (and
the metrics JSON beside the log), works out (protocol, dataset, trainer, config, seed) from the folder path, and
prints mean and spread over seeds per dataset and method (a method is a trainer with one config), with an Average
row; optionally the calibration tables and the figures. ``docs/results.md`` documents the rules and options.

    logs      which test result a Dassl log gives
    runs      run folders, their layouts (protocols) and their metrics JSON records
    summary   statistics over seeds and the Average rows
    tables    text and Markdown tables, the calibration table
    export    the tidy CSV and the run listing
    plots     reliability diagrams, base/new/HM bars, risk-coverage curves, accuracy vs MC samples
    cli       the command line
"""
from clipbayes.logfiles import log_files
from clipbayes.results.cli import build_parser, filter_runs, main
from clipbayes.results.logs import LogResult, ParsedLog, parse_log
from clipbayes.results.runs import PROTOCOL_TITLES, PROTOCOLS, Run, find_run_dirs, read_run, scan
from clipbayes.results.summary import Average, ProtocolSummary, Stat, harmonic_mean, run_value, summarise

__all__ = ["main", "build_parser", "filter_runs", "LogResult", "ParsedLog", "log_files", "parse_log",
           "PROTOCOL_TITLES", "PROTOCOLS", "Run", "find_run_dirs", "read_run", "scan", "Average",
           "ProtocolSummary", "Stat", "harmonic_mean", "run_value", "summarise"]
