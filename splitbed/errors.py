"""Errors a user can fix. The CLI prints them as one clear message and exits 2, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input or an unusable machine: says what, where, and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        self.message = message
        self.where = where
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text += f" ({self.fix})"
        return text


def run_reporting_user_errors(body: Callable[[], int | None], debug: bool = False) -> int:
    """Run a command's body; a UserError becomes one 'error: ...' line and its exit code (2).

    With debug the traceback is shown instead, for developers.
    """
    try:
        return body() or 0
    except UserError as err:
        if debug:
            raise
        print(f"error: {err.render()}", file=sys.stderr)
        return err.exit_code
