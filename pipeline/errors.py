"""The one exception type users see as a one-line message instead of a traceback."""


class PipelineError(Exception):
    """Bad input or an unusable environment, explained in one line (key, bad value, what is allowed)."""


class TrainingStopped(Exception):
    """Raised by a callback to end a run on purpose (a pruned trial): the run closes as KILLED, not FAILED."""
