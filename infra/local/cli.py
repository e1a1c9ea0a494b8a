"""The `gridsight` command line: one root app; each area registers its verbs from its own module."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from infra.local.commands.errors import FriendlyGroup
from shared.logging import configure_logging

app = typer.Typer(
    name="gridsight",
    cls=FriendlyGroup,
    help="Smart-meter energy analytics: simulator, sync, refresh, forecasts, anomalies, chat.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Tracebacks instead of one-line errors (or GRIDSIGHT_DEBUG=1)."),
    ] = False,
) -> None:
    ctx.obj = {"debug": debug}


# Each module exposes `register(app: typer.Typer) -> None`; add yours here.
COMMAND_MODULES: list[str] = [
    "infra.local.commands.anomaly",
    "infra.local.commands.warehouse",
    "infra.local.commands.simulator",
    "infra.local.commands.sync",
    "infra.local.commands.runtime",
    "infra.local.commands.forecast",
    "infra.local.commands.chat",
]


def build_app() -> typer.Typer:
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(app)
    return app


def main() -> None:
    configure_logging("WARNING")
    build_app()()


if __name__ == "__main__":
    main()
