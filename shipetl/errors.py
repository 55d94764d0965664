"""The exception family: what went wrong, and whether trying again can help."""

from __future__ import annotations


class ShipetlError(Exception):
    """Base of every error shipetl raises on purpose; its message is meant for the user."""


class ConfigError(ShipetlError):
    """The pipeline file is wrong; the message names the file and the key path."""


class PluginError(ShipetlError):
    """A plugin failed to load, declared something invalid, or clashed with another plugin."""


class SourceError(ShipetlError):
    """A source cannot go on in this run; other sources are unaffected.

    ``source`` names the source it came from (``shipengine/acct-1``) where known: core's HTTP client fills it in
    on what a plugin's ``classify`` raises, for code that handles errors of several sources. The message need
    not repeat it: the run summary and ``shipetl runs`` give each source's error on the source's own line.
    """

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class TransientError(SourceError):
    """A failure that may pass (HTTP 429, 5xx, timeouts, a provider's 'busy'): retry with backoff."""

    def __init__(self, message: str, *, source: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, source=source)
        self.retry_after = retry_after


class TerminalError(SourceError):
    """A failure retrying will not fix (bad request, missing permission): fail the source."""


class AuthError(TerminalError):
    """Credentials were refused; the message says which credential to fix."""


class SkipRecord(TerminalError):
    """This one record cannot be fetched in this run (a carrier's side is down); skip it, count it, ask next run."""


class NotFoundError(TerminalError):
    """The provider does not know the requested record; callers usually skip it and count a miss."""


class WarehouseBusyError(ShipetlError):
    """The warehouse file is locked by another process (a writer, or readers while we commit)."""


class RunInProgressError(ShipetlError):
    """Another ``shipetl run`` of the same warehouse is under way; this one fetched nothing."""


class RunStopped(BaseException):
    """The run was asked to stop (Ctrl-C, SIGTERM) while a request waited to retry or for the rate limit.

    Raised inside a provider's extraction so it ends now rather than after the wait; the runner then loads
    what was fetched. A ``BaseException``, like ``KeyboardInterrupt``, so a plugin's ``except Exception``
    does not take it for a failed request.
    """
