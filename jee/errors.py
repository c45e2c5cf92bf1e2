"""Errors that carry their own explanation and fix, and which of them are the user's to fix.

The entry points print a user error as one line (exit code 2) instead of a traceback, and the
evaluation commands undo what they created before one; anything else is a bug and keeps its
traceback.
"""

from jee.checkpoint import CheckpointError
from jee.workdir import WorkdirError


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the message names the step and the last good checkpoint."""


# ConfigError is a ValueError.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, CheckpointError, TrainingDiverged,
               WorkdirError)
