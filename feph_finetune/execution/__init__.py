"""Executing a matrix: one run's job, the runner, the executors and the progress view."""
