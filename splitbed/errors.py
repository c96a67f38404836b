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
        return " ".join(line.strip() for line in text.splitlines() if line.strip())  # always one line


class RunFailed(UserError):
    """A run that started and could not finish (a node's program died): one line, exit 1; its rows so
    far, its manifest and its summary say the rest."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a job engine sends): handled like Ctrl-C, rows kept and everything removed."""


def raise_terminated(signum, frame) -> None:
    raise Terminated()


def run_reporting_user_errors(body: Callable[[], int | None], debug: bool = False) -> int:
    """Run a command's body; a UserError becomes one 'error: ...' line and its exit code (2).

    With debug the traceback is shown instead, for developers. SIGTERM is turned into Terminated (a
    KeyboardInterrupt), so a stopped command undoes what it made, as after Ctrl-C.
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return body() or 0
    except UserError as err:
        if debug:
            raise
        print(f"error: {err.render()}", file=sys.stderr)
        return err.exit_code


def check_output_path(value: str | None, option: str) -> None:
    """An output file a command will write at its end: its folder must exist now, not after an hour's run."""
    if value is None:
        return
    from pathlib import Path

    folder = Path(value).resolve().parent
    if not folder.is_dir():
        raise UserError(f"{option}: folder {folder} does not exist", fix="create it, or name another file")
    if Path(value).is_dir():
        raise UserError(f"{option}: {value} is a folder", fix="name a file")
