"""Structured logging set-up: console lines on a terminal, JSON lines elsewhere, secrets always masked."""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

from shipetl.redact import redact_obj

LOG_FORMATS = ("auto", "json", "console")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_FIRST_KEYS = ("timestamp", "level", "event")
# Types a renderer shows faithfully; anything else is turned into redacted text first, because its
# repr (an httpx.URL, a request) could carry a secret the structural redaction cannot see.
_PLAIN_TYPES = (str, int, float, bool, type(None), dict, list, tuple)
_current_format: str | None = None  # "json" or "console" once configure() ran


def redact_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets in every value and put timestamp, level, event first."""
    out: dict[str, Any] = {}
    for key in _FIRST_KEYS:
        if key in event_dict:
            out[key] = event_dict[key]
    for key, value in event_dict.items():
        if key not in out:
            out[key] = value
    for key, value in out.items():
        if key == "exc_info":
            continue
        if not isinstance(value, _PLAIN_TYPES):
            value = str(value)
        out[key] = redact_obj({key: value})[key]
    return out


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def configure(log_format: str = "auto", level: str = "info", stream: IO[str] | None = None) -> None:
    """Set up structlog for the whole process; safe to call again (the last call wins).

    :param log_format: ``auto`` (console on a TTY, else JSON lines), ``json`` or ``console``.
    :param level: minimum level name (``debug``, ``info``, ``warning``, ``error``).
    :param stream: where lines go; standard error by default.
    :raises ValueError: on an unknown format or level.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    try:
        min_level = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log level {level!r} is not one of debug, info, warning, error") from None
    stream = stream if stream is not None else sys.stderr
    tty = _is_tty(stream)
    if log_format == "auto":
        log_format = "console" if tty else "json"
    global _current_format
    _current_format = log_format
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=tty)
    structlog.reset_defaults()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.StackInfoRenderer(),
            # Tracebacks become text before redaction so secrets in exception messages are masked.
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        # Not cached, so a later configure() (tests, CLI flags) reaches loggers made earlier.
        cache_logger_on_first_use=False,
    )
    # httpx logs full request URLs (query strings included) through stdlib logging; keep it quiet,
    # our own http_request events carry the same facts redacted.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def current_format() -> str | None:
    """``json`` or ``console``: what the last configure() chose (``auto`` resolved); None before any call."""
    return _current_format


def get_logger(**bound: Any) -> Any:
    """Return a logger with ``bound`` keys on every event; it follows later configure() calls."""
    return structlog.get_logger(**bound)

