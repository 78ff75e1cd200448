"""The error edge of the command lines: any failure is one `error:` line on stderr.

A traceback is for developers: set ELECTRA_DEBUG=1 to get the exception raised as it is.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

DEBUG_ENV = "ELECTRA_DEBUG"
BAD_INPUT = (ValueError, OSError, ImportError)  # input, configuration, files, a missing package
EXIT_BAD_INPUT = 2  # one of BAD_INPUT
EXIT_FAILED = 1  # any other exception
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it


def debugging() -> bool:
  """Whether ELECTRA_DEBUG asks for tracebacks (set and not "0" or empty)."""
  return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_line(err: BaseException) -> str:
  """`err` as the text after "error: ": its message for BAD_INPUT (whose messages name the file
  and the fix), its type and message for anything else."""
  text = str(err).strip() or type(err).__name__
  if isinstance(err, BAD_INPUT):
    return text
  return f"{type(err).__name__}: {text} ({DEBUG_ENV}=1 shows the traceback)"


def run_command(body: Callable[[], int]) -> int:
  """Runs a command's `body` and returns its exit status; an exception becomes one `error:` line
  on stderr and EXIT_BAD_INPUT / EXIT_FAILED, Ctrl-C EXIT_INTERRUPTED. With ELECTRA_DEBUG=1
  exceptions propagate with their traceback."""
  try:
    return body() or 0
  except KeyboardInterrupt:
    if debugging():
      raise
    print("error: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED
  except Exception as err:  # the CLI edge: every failure is reported, as one line
    if debugging():
      raise
    print(f"error: {error_line(err)}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT if isinstance(err, BAD_INPUT) else EXIT_FAILED
