"""The pipeline's error tree.

Errors are typed by who must act: ``ContentError`` means an author can fix a file,
``SourceError`` means the repository or ref is wrong, ``TemplateError`` points at a
template line, ``BuildFailed`` carries every content problem of one run at once.
A traceback from the pipeline means a bug, never bad content.
"""

from __future__ import annotations

from collections.abc import Iterable


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class SourceError(PipelineError):
    """The content source (git repository, ref, directory) cannot be read."""


class ConfigError(PipelineError):
    """flowcms.toml is missing a value or has a wrong one."""

    def __init__(self, message: str, *, path: str = "flowcms.toml") -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class ContentError(PipelineError):
    """One problem in one content file, located for the author."""

    def __init__(
        self, path: str, line: int, column: int, code: str, message: str
    ) -> None:
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path = path
        self.line = line
        self.column = column
        self.code = code
        self.message = message

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.line, self.column, self.message)


class TemplateError(PipelineError):
    """A template failed to compile or render; names the template file and line."""

    def __init__(self, template: str, line: int, message: str) -> None:
        super().__init__(f"{template}:{line}: {message}")
        self.template = template
        self.line = line
        self.message = message


class BuildFailed(PipelineError):
    """A build found problems; the live site was not touched."""

    def __init__(self, errors: Iterable[PipelineError]) -> None:
        self.errors: list[PipelineError] = sorted(errors, key=_error_order)
        n = len(self.errors)
        super().__init__(f"build failed with {n} error{'s' if n != 1 else ''}")


class StoreError(PipelineError):
    """The build store is missing a build or is damaged."""


class UnknownBuild(StoreError):
    """No build answers to the id or prefix asked for (the admin API's 404)."""


class PublishConflict(PipelineError):
    """Another publish holds the lock."""


class QueryError(PipelineError):
    """A query parameter is malformed or out of range (maps to HTTP 400)."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter


def _error_order(error: PipelineError) -> tuple[str, int, int, str]:
    if isinstance(error, ContentError):
        return error.sort_key()
    if isinstance(error, TemplateError):
        return (error.template, error.line, 0, error.message)
    return ("", 0, 0, str(error))
