"""The closed error hierarchy that decides between retrying and dead-lettering.

- ``TransientError``: the world is temporarily broken (database down, broker unavailable). Retry with backoff;
  never dead-letter, never commit past the record.
- ``PermanentError``: this record can never be applied as it is. Dead-letter it with its ``stage`` and move on.

Messages must never quote a value from a record: they end up in logs and dead-letter headers (AVG/GDPR).
"""

from __future__ import annotations

from typing import ClassVar, Literal

Stage = Literal["decode", "contract", "normalise", "write"]


class IngestError(Exception):
    """Base of every error the worker decides on."""


class TransientError(IngestError):
    """Worth retrying: the same input may succeed later."""


class PermanentError(IngestError):
    """Never worth retrying as is: the record goes to the dead-letter topic."""

    stage: ClassVar[Stage]


class DecodeError(PermanentError):
    """The value is not UTF-8 JSON at all."""

    stage: ClassVar[Stage] = "decode"


class ContractError(PermanentError):
    """Valid JSON that breaks the v1 contract; the message names the JSON path and the reason."""

    stage: ClassVar[Stage] = "contract"


class NormaliseError(PermanentError):
    """A contract-valid event whose values cannot be normalised into anything storable."""

    stage: ClassVar[Stage] = "normalise"


class WriteRejected(PermanentError):
    """PostgreSQL refused this record for good (data 22*, integrity 23*): retrying cannot help."""

    stage: ClassVar[Stage] = "write"

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class ConfigError(IngestError):
    """The environment does not describe a runnable worker; the message names the variable."""


class MigrationError(IngestError):
    """The migrations cannot be applied as they are (changed applied file, bad file name)."""


class DeploymentError(IngestError):
    """The deployment does not give the worker what it needs, and waiting cannot fix it: a topic missing or not
    authorised, the database schema behind the code, a port already taken. The message names the topic, server or
    variable to fix."""


class AuthenticationError(IngestError):
    """A server refused the credentials or the TLS trust (wrong password, unknown user, a CA that does not match).
    The message names the server and the variable; it never quotes a secret."""


class UnreachableError(TransientError):
    """A server stayed unreachable through the start-up retries. The message names the server and the variable."""
