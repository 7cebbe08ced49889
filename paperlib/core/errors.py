"""The one exception type paperlib raises for bad input or missing data."""


class PaperlibError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it.

    The command line prints it as a single ``error: ...`` line and exits with
    status 2, without a traceback.
    """
