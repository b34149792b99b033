"""Errors shared by every layer. Only the CLI turns them into exit codes."""

from __future__ import annotations


class ShadowmeshError(Exception):
    """Base of every error shadowmesh raises on purpose."""


class ConfigError(ShadowmeshError):
    """A resource document is invalid.

    ``source`` is the file (or ``-`` for stdin), ``document`` the 0-based index of the YAML
    document in it, ``field`` the dotted path inside the document (``spec.http[0].route``).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        document: int | None = None,
        kind: str = "",
        name: str = "",
        field: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.document = document
        self.kind = kind
        self.name = name
        self.field = field

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.document is not None:
            where.append(f"document {self.document + 1}")
        if self.kind:
            where.append(f"{self.kind} {self.name!r}" if self.name else self.kind)
        if self.field:
            where.append(f"field {self.field}")
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class ParseError(ConfigError):
    """A file that is not YAML (or JSON) at all, as opposed to a document that is invalid:
    ``istioctl analyze`` exits 65 for the one and 79 for the other."""


class ConfigErrors(ShadowmeshError):
    """Several documents failed; nothing was applied."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors
