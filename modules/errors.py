"""User-facing errors: each names the option, file, line or field at fault and what was expected.

The CLI prints these as one message (no traceback) and exits with status 2.
"""


class LightspielError(ValueError):
    """A mistake in the user's input, as opposed to a bug."""


class ConfigError(LightspielError):
    """A bad option value or model path."""


class DataFileError(LightspielError):
    """A bad line in an episodes or pairs file: ``file:line: field: problem``."""

    def __init__(self, path, line: int, field: str, problem: str) -> None:
        super().__init__(f"{path}:{line}: field {field!r}: {problem}")
        self.path, self.line, self.field = str(path), line, field
