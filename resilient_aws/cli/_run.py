"""Run one command: the context, Ctrl-C handling, and errors turned into exit codes."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from typing import TextIO

from resilient_aws.cli._context import Context
from resilient_aws.cli._exit import INTERRUPTED, PIPE_CLOSED, classify_error
from resilient_aws.cli._interrupt import graceful_interrupt

__all__ = ["run"]


def run(
    args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the command ``args.handler`` names; return its exit code.

    The first Ctrl-C asks the command to stop at a safe point (it settles what is in flight,
    reports, and returns 130); the second raises ``KeyboardInterrupt``, which also gives 130.
    An error that ends the command is printed as one line (and as a JSON report with
    ``--json``) and mapped to an exit code by :func:`~resilient_aws.cli._exit.classify_error`.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    module, _, name = str(args.handler).partition(":")
    handler: Callable[[Context], int] = getattr(importlib.import_module(module), name)
    command = _command_name(args)
    try:
        with graceful_interrupt() as stop:
            context = Context(args, stdout=out, stderr=err, stop=stop)
            return handler(context)
    except KeyboardInterrupt:
        err.write(f"\nresilient-aws {command}: interrupted\n")
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (| head): nothing more to say, and nothing to say it to.
        _silence_stdout()
        return PIPE_CLOSED
    except Exception as error:
        code, message = classify_error(error)
        as_json = bool(getattr(args, "json", False))
        data_on_stdout = bool(getattr(args, "data_on_stdout", False))
        if not (as_json and data_on_stdout):
            # with --json, a command whose report goes to stderr (export) writes JSON only there
            err.write(f"resilient-aws {command}: error: {message}\n")
        if as_json:
            from resilient_aws._json import dumps

            report = {
                "command": command,
                "ok": False,
                "exit_code": code,
                "error": {"type": type(error).__name__, "message": message},
            }
            stream = err if data_on_stdout else out
            try:
                stream.write(dumps(report) + "\n")
                stream.flush()
            except BrokenPipeError:
                _silence_stdout()
        return code


def _command_name(args: argparse.Namespace) -> str:
    parts = [str(args.command)]
    source = getattr(args, "source", None)
    if source:
        parts.append(str(source))
    return " ".join(parts)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (tests): nothing will flush to a closed pipe
        pass
