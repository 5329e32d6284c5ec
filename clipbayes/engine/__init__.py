"""The base Dassl trainer, learning-rate schedules and checkpoints."""
