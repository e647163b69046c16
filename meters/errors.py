"""Errors that the CLI reports as one clear line on stderr, each with its documented exit status.

====  ===============  ======================================================================
code  error            meaning
====  ===============  ======================================================================
0     -                done
1     MetersError      an error the operator can fix (bad input, lake missing, broker not running)
2     (click)          usage: an unknown option or a bad argument
3     NothingToDo      nothing to do (e.g. every day up to the target is already settled)
4     DataNotReady     data not ready: the day has not ended, or its readings cover too few meters
5     Busy             another run holds the lock
6     LakeDamaged      a file of the lake is damaged or inconsistent (the file is named)
====  ===============  ======================================================================

An unexpected exception (a bug) also exits 1, with its traceback.
"""


class MetersError(Exception):
    """A user-facing error: bad input, missing lake, broker not running …"""

    exit_code = 1


class NothingToDo(MetersError):
    """Nothing to do: not a failure, but nothing was written."""

    exit_code = 3


class DataNotReady(MetersError):
    """The data a run needs is not there yet (the day has not ended, too few readings)."""

    exit_code = 4


class Busy(MetersError):
    """Another process holds the lock the run needs."""

    exit_code = 5


class LakeDamaged(MetersError):
    """A lake file is damaged or inconsistent; the message names it."""

    exit_code = 6
