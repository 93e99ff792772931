"""A failed ``monai.bundle run`` ends with one line saying what went wrong; the traceback goes to the log file.

MONAI wraps every error of a config expression in ``RuntimeError: Failed to evaluate ConfigExpression``
and prints 50-120 lines of traceback, with the message that names the file or key somewhere in the
middle. :func:`install` (the first ``initialize`` step of every config) makes the last line the innermost
error's own message. Tracebacks then go only to the run's log file (``logs/*.log``), and to the terminal
too when ``BRATS_GRADING_DEBUG=1``. A program that runs a bundle workflow itself (MONAI Label, a notebook)
is left alone: only a ``monai.bundle`` command line (python-fire) is changed.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

__all__ = ["DEBUG_VARIABLE", "innermost", "install", "summary"]

DEBUG_VARIABLE = "BRATS_GRADING_DEBUG"
logger = logging.getLogger(__name__)


def innermost(error: BaseException) -> BaseException:
    """The error at the bottom of the ``raise ... from`` chain: the one whose message names the problem."""
    seen = {id(error)}
    while True:
        nested = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
        if nested is None or id(nested) in seen:
            return error
        seen.add(id(nested))
        error = nested


def summary(error: BaseException) -> str:
    """``error: <Type>: <message>`` of the innermost error, on one line."""
    cause = innermost(error)
    text = " ".join(str(cause).split()) or "no message"
    return f"error: {type(cause).__name__}: {text}"


class _WithoutTraceback(logging.Formatter):
    """A console formatter that leaves the traceback of a log record out (the log file keeps it)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _debug() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def _from_command_line() -> bool:
    """True under ``python -m monai.bundle run ...``: python-fire is calling us."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("fire."):
            return True
        frame = frame.f_back
    return False


def _excepthook(kind, error, trace) -> None:
    if issubclass(kind, (KeyboardInterrupt, SystemExit)):
        sys.__excepthook__(kind, error, trace)
        return
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for handler in files:
        handler.handle(logger.makeRecord(logger.name, logging.ERROR, "", 0, "run failed", (), (kind, error, trace)))
    if _debug():
        traceback.print_exception(kind, error, trace, file=sys.stderr)
    elif files:
        print(f"(traceback in {files[-1].baseFilename}; {DEBUG_VARIABLE}=1 prints it here)", file=sys.stderr)
    else:
        print(f"({DEBUG_VARIABLE}=1 prints the traceback)", file=sys.stderr)
    print(summary(error), file=sys.stderr, flush=True)


def install() -> None:
    """Under a ``monai.bundle`` command line: the one-line error last, tracebacks to the log file."""
    if not _from_command_line():
        return
    sys.excepthook = _excepthook
    if _debug():
        return
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and not isinstance(handler.formatter, _WithoutTraceback):
            handler.setFormatter(_WithoutTraceback(handler.formatter))
