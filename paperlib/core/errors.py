"""The one exception type paperlib raises for bad input or missing data (absent data files: a subtype), and
the command lines' argument parser, which reports bad arguments the same way."""

import argparse
import sys


class PaperlibError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it.

    The command line prints it as a single ``error: ...`` line and exits with
    status 2, without a traceback.
    """


class DataNotFound(PaperlibError):
    """A dataset's files are not on this machine and could not be fetched (as opposed to present but
    unreadable): callers that can go on without that dataset catch this one only."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse``'s parser, reporting a bad argument as paperlib's errors are: one ``error: ...`` line (naming
    ``--help``, where argparse prints its whole usage block first) and exit status 2. Its subcommands' parsers
    are of this class too."""

    def error(self, message: str) -> None:  # type: ignore[override]  # argparse's own signature, NoReturn
        print(f"error: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(2)
