"""How every command fails: one `error: ...` line on stderr and a non-zero exit.

`run(main)` calls a command's `main(argv)`; a `UserError` (the user's mistake, see
errors.py) becomes one line and exit status 1, a `UsageError` exit status 2, Ctrl-C exit
status 130. The traceback stays behind `--verbose` or MOBILENET_JAX_VERBOSE=1. Any other
exception is a bug of ours and propagates with its traceback. `ArgumentParser` is argparse
with that failure format and the `--verbose` flag; every command builds its parser with it.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any, Callable, NoReturn, Optional, Sequence

from mobilenet_jax.errors import UsageError, UserError

VERBOSE_ENV = "MOBILENET_JAX_VERBOSE"


def verbose_requested(argv: Sequence[str]) -> bool:
    return "--verbose" in argv or os.environ.get(VERBOSE_ENV, "").lower() not in ("", "0", "false")


def one_line(error: BaseException) -> str:
    """The message of `error` on one line (line breaks become '; ')."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise `UsageError` (one line, exit 2), with `--verbose`."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action="store_true",
                          help=f"on an error, also print its traceback (or set {VERBOSE_ENV}=1)")

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def run(main: Callable[[list[str]], Any], argv: Optional[Sequence[str]] = None) -> int:
    """The exit status of `main(argv)` (argv defaults to sys.argv[1:]); see the module doc."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        result = main(argv)
    except UserError as e:
        if verbose_requested(argv):
            traceback.print_exc()
        print(f"error: {one_line(e)}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def main_of(main: Callable[[list[str]], Any]) -> NoReturn:
    """`if __name__ == "__main__": cli.main_of(main)`."""
    sys.exit(run(main))
