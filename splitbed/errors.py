"""Errors a user can fix. The CLI prints them as one clear message and exits 2, never a traceback."""


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
