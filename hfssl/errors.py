"""The one exception type the command line turns into a single clear line."""


class UsageError(Exception):
    """Bad input from the user: a file, a recipe key, a value. The CLI prints it as `error: ...` and exits 2."""


class TrainingStopped(Exception):
    """Training cannot usefully go on (a non-finite loss, a collapsed objective). The CLI prints it as one line and
    exits 1; the last checkpoint stays in place."""
