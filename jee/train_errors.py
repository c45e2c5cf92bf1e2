"""Errors of a training run that carry their own explanation and fix."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the message names the step and the last good checkpoint."""
