"""The one exception type paperlib raises for bad input or missing data (absent data files: a subtype)."""


class PaperlibError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it.

    The command line prints it as a single ``error: ...`` line and exits with
    status 2, without a traceback.
    """


class DataNotFound(PaperlibError):
    """A dataset's files are not on this machine and could not be fetched (as opposed to present but
    unreadable): callers that can go on without that dataset catch this one only."""
