"""Sweeps: a yaml description expanded into train.py runs (expand), their states (status), and the runners that
run them one after another, on a local GPU pool (runners) or as a Slurm job array through submitit (slurm);
``clipbayes-sweep`` (cli) is the command. See docs/scale.md."""
