"""One rule for every `gridsight` verb: a mistake or an unavailable dependency is one or two plain
lines (what happened, what to do) and exit code 1; bad flags are click's usage errors (exit 2).

Commands raise `UserError` for what they can name; anything else that escapes a command is shown
the same way (its type and message), and `gridsight --debug ...` (or GRIDSIGHT_DEBUG=1) lets the
traceback through for the people fixing it.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import ClickException  # typer vendors click
from typer.core import TyperGroup

__all__ = ["INTERRUPTED", "FriendlyGroup", "UserError", "debug_enabled", "fail", "positive", "show_error"]

INTERRUPTED = 130  # what a shell reports for SIGINT, so scripts can tell


class UserError(Exception):
    """A failure the user can act on: `message` says what happened, `hint` what to do next."""

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


def fail(message: str, hint: str | None = None, *, exit_code: int = 1) -> UserError:
    """`raise fail(...)` reads as a sentence at the call site."""
    return UserError(message, hint, exit_code=exit_code)


def debug_enabled(ctx: Any = None) -> bool:
    if os.environ.get("GRIDSIGHT_DEBUG", "").lower() in {"1", "true", "yes"}:
        return True
    while ctx is not None:
        if getattr(ctx, "obj", None) and ctx.obj.get("debug"):
            return True
        ctx = ctx.parent
    return False


def _stderr() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def show_error(message: str, hint: str | None = None) -> None:
    console = _stderr()
    console.print(f"[red]error:[/red] {escape(message)}")
    if hint:
        console.print(escape(hint))


class FriendlyGroup(TyperGroup):
    """The root command: turns what escapes a verb into the plain lines above."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (ClickException, typer.Exit, typer.Abort):
            raise
        except UserError as exc:
            if debug_enabled(ctx):
                raise
            show_error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from exc
        except KeyboardInterrupt as exc:
            if debug_enabled(ctx):
                raise
            _stderr().print("interrupted")
            raise typer.Exit(INTERRUPTED) from exc
        except Exception as exc:
            if debug_enabled(ctx):
                raise
            text = str(exc).strip().splitlines()
            show_error(
                f"{type(exc).__name__}: {text[0] if text else 'no message'}",
                "this looks like a bug or an unexpected state; `gridsight --debug "
                + shlex.join(sys.argv[1:])
                + "` shows the traceback",
            )
            raise typer.Exit(1) from exc


def positive(value: float | None) -> float | None:
    """An option callback for "more than zero" (typer's ranges are inclusive only)."""
    if value is not None and value <= 0:
        raise typer.BadParameter(f"{value:g} is not more than 0")
    return value
