"""The exceptions the command line turns into a single clear line, and the helper that makes that line. The Python API
(`hfssl.api`) raises them as they are: catch `HfsslError` for both."""


class HfsslError(Exception):
    """What hfssl raises on purpose; its message is one line meant for the user."""


class UsageError(HfsslError):
    """Bad input from the user: a file, a recipe key, a value. The CLI prints it as `error: ...` and exits 2."""


class DiskFull(UsageError):
    """A write ran out of space (or quota): what it wrote is removed and what it was to replace is intact. One line,
    exit 2, as bad input."""


class TrainingStopped(HfsslError):
    """Training cannot usefully go on (a non-finite loss, a collapsed objective). The CLI prints it as one line and
    exits 1; the last checkpoint stays in place."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


PREEMPTED = 75
"""The exit status of a run that a preemption signal stopped after saving a checkpoint: resumable. (75 is
sysexits.h's EX_TEMPFAIL, "try again later"; schedulers can requeue on it.)"""


class Preempted(Exception):
    """A preemption signal (SIGTERM, SIGUSR1) stopped training at a step boundary and the run saved a checkpoint
    there. The CLI prints it as one line and exits `PREEMPTED`."""
