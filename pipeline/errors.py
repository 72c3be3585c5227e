"""The exceptions that end a run on purpose: bad input (one line for the user) and a stop a callback asked for."""


class PipelineError(Exception):
    """Bad input or an unusable environment, explained in one line (key, bad value, what is allowed)."""


class TrainingStopped(Exception):
    """Raised by a callback to end a run on purpose (a pruned trial): the run closes as KILLED, not FAILED."""


def one_line(error: BaseException) -> str:
    """'TypeError: what it said', whitespace folded: a library's multi-line message as one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
