"""Slurm through submitit: one job array, one array task per chain (a training run and the runs that evaluate
its model, on the same node one after another, so train-before-test holds without job dependencies).

Each task runs :class:`ChainJob`, which calls the runners' ``execute`` for every run of its chain: finished runs
are skipped, an unfinished training run resumes from its newest checkpoint. On preemption or time-out Slurm sends
the signal submitit listens to; submitit then calls ``ChainJob.checkpoint``, which requeues the same chain: the
requeued task skips what finished and resumes the rest from its checkpoints (whose random states make the resumed
epochs replay exactly). Logs: ``OUTPUT/.sweep/slurm/<job id>_<task>_log.out|err`` (submitit's files).
"""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import Optional

import submitit

from clipbayes.sweep.runners import Sweep, execute, shell_line
from clipbayes.sweep.status import is_finished


@dataclass
class Resources:
    """What each array task asks for (the ``--partition``, ``--gpus-per-job``, ... flags)."""

    partition: Optional[str] = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int = 64
    time_min: int = 720
    array_parallelism: int = 64
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None

    def parameters(self) -> dict:
        extra = {key: value for key, value in (("account", self.account), ("qos", self.qos),
                                                ("constraint", self.constraint)) if value}
        parameters = dict(name="clipbayes-sweep", timeout_min=self.time_min, nodes=1, tasks_per_node=1,
                          gpus_per_node=self.gpus_per_job, cpus_per_task=self.cpus_per_job, mem_gb=self.mem_gb,
                          slurm_array_parallelism=self.array_parallelism)
        if self.partition:
            parameters["slurm_partition"] = self.partition
        if extra:
            parameters["slurm_additional_parameters"] = extra
        return parameters


def chains(sweep: Sweep) -> list[list]:
    """The unfinished work as chains: each training run with its evaluations; eval-only runs, and evaluations
    whose training run is not part of this sweep, alone."""
    grouped: dict = {}
    for run in sweep.runs:
        if run.kind == "train":
            grouped.setdefault(run.key, []).insert(0, run)
        elif run.needs and any(r.key == run.needs for r in sweep.runs):
            grouped.setdefault(run.needs, []).append(run)
        else:
            grouped[run.key] = [run]
    return [chain for chain in grouped.values() if not all(is_finished(run, sweep.repo) for run in chain)]


class ChainJob(submitit.helpers.Checkpointable):
    """An array task: the runs of one chain, in order. Fails (so Slurm shows it) when a run failed."""

    def __init__(self, sweep: Sweep):
        self.sweep = sweep

    def __call__(self, chain: list) -> dict:
        outcomes = {run.key: execute(self.sweep, run) for run in chain}
        failed = [key for key, outcome in outcomes.items() if outcome in ("failed", "blocked")]
        if failed:
            raise RuntimeError(f"{len(failed)} run(s) of this chain failed or could not start: {failed} "
                               f"(see their log.txt; clipbayes-sweep status lists every run)")
        return outcomes


def submit(sweep: Sweep, resources: Resources, cluster: Optional[str] = None, dry_run: bool = False,
           wait: bool = False) -> list:
    """Submit the unfinished chains as one job array; with ``dry_run`` print it instead. ``cluster`` is
    submitit's ("slurm"; "local" runs the array on this machine, for tests). Returns the jobs."""
    work = chains(sweep)
    folder = osp.join(sweep.store.root, "slurm")
    parameters = resources.parameters()
    if dry_run or not work:
        print(f"[sweep] {'would submit' if dry_run else 'nothing to submit:'} a job array of {len(work)} "
              f"task(s); logs in {folder}; parameters: {parameters}")
        for index, chain in enumerate(work):
            for run in chain:
                state = "finished, skipped" if is_finished(run, sweep.repo) else shell_line(sweep.command(run))
                print(f"  task {index}: {run.key}: {state}")
        return []
    executor = submitit.AutoExecutor(folder=osp.join(folder, "%A_%a" if cluster != "local" else "%j"),
                                     cluster=cluster)
    if executor.cluster != "slurm":
        parameters = {k: v for k, v in parameters.items() if not k.startswith("slurm_")}
    executor.update_parameters(**parameters)
    jobs = executor.map_array(ChainJob(sweep), work)
    for job, chain in zip(jobs, work):
        print(f"[sweep] job {job.job_id}: {', '.join(run.key for run in chain)}", flush=True)
    if wait:
        for job in jobs:
            try:
                job.result()
            except Exception as err:  # a failed chain: reported, the others are still waited for
                print(f"[sweep] job {job.job_id} failed: {str(err).strip().splitlines()[-1]}; "
                      f"log: {job.paths.stderr}", flush=True)
    return jobs
