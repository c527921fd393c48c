"""Training: the trainer, its events, optimizers and schedules, devices, checkpoints, run folders, caches."""
