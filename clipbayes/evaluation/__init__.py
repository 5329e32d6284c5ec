"""Evaluation beyond accuracy: calibration and selective-prediction metrics (``metrics``), post-hoc temperature
scaling (``temperature``), and what each evaluation writes (``report``). ``docs/results.md`` defines every metric."""
