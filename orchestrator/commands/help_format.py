"""Help as a user reads it: an argument shown by its placeholder (NAME...), never a Python type (<list[str]>).

Typer writes an option's metavar in place of its type, but an argument's type beside its name; commands
with arguments pass `cls=Command` so that their arguments read like options do.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


def placeholder(param: Any) -> str:
    """What a user types for an argument: its metavar (else its name, upper case), "..." when repeatable."""
    name = str(param.metavar or param.name.upper())
    return f"{name}..." if param.nargs != 1 else name


class Command(TyperCommand):
    """Typer's command, its arguments listed by placeholder."""

    # Any: the context and formatter are the classes of the click copy inside typer (a private module).
    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((placeholder(param), record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
