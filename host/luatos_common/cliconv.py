"""What every command-line tool of the kit does the same way.

One framework (click: shell completion through ``_<PROG>_COMPLETE=bash_source <prog>``, and
"Did you mean ...?" for a mistyped command or option), ``--version`` on every tool, ``-h`` as
well as ``--help``, and colour only on a terminal and never when ``NO_COLOR`` is set
(https://no-color.org: present and not empty).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import metadata
from typing import Any, TextIO

import click

DISTRIBUTION = "luatos-fota-kit"
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"],
                                    "max_content_width": 100}


def no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def use_colour(stream: TextIO, requested: bool | None = None) -> bool:
    """Colour for ``stream``: an explicit flag wins (no-color.org: command-line flags override
    NO_COLOR), else a terminal without NO_COLOR."""
    if requested is not None:
        return requested
    return not no_color() and bool(getattr(stream, "isatty", lambda: False)())


def kit_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown (not installed)"


def version_option(prog: str) -> Callable[[Any], Any]:
    return click.version_option(kit_version(), "--version", "-V", prog_name=prog,
                                message="%(prog)s %(version)s", help="Show the version and exit.")


def honour_no_color(ctx: click.Context) -> None:
    """Call first in a tool's top-level command: styled output turns plain under NO_COLOR."""
    if no_color():
        ctx.color = False
