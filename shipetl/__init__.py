"""shipetl: orders, shipments and tracking events from marketplaces and carriers into one warehouse.

The names below are what plugin authors may import; everything else is internal and may move.
"""

from .errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    PluginError,
    ShipetlError,
    SkipRecord,
    SourceError,
    TerminalError,
    TransientError,
)
from .hookspecs import API_VERSION, hookimpl, hookspec
from .httpclient import HttpClient, http_client, not_the_api, parse_retry_after
from .keys import event_id_sql
from .polling import Polls, Skip
from .provider import ExtractContext, NoOptions, Page, Provider, Stream, TableMapping
from .tokens import TokenPair, TokenStore
from .ratelimit import RateLimit
from .redact import register_secret
from .sqltext import sql_literal

__version__ = "0.1.0"
__all__ = [
    "API_VERSION", "AuthError", "ConfigError", "ExtractContext", "HttpClient", "NoOptions", "NotFoundError", "Page",
    "PluginError", "Polls", "Provider", "RateLimit", "ShipetlError", "Skip", "SkipRecord", "SourceError", "Stream",
    "TableMapping", "TerminalError", "TokenPair", "TokenStore", "TransientError", "event_id_sql", "hookimpl", "hookspec",
    "http_client", "not_the_api", "parse_retry_after", "register_secret", "sql_literal",
]
