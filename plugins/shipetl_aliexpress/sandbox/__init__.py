"""AliExpress's Open Platform in `shipetl sandbox`: signed calls, tokens, both error layers, seeded orders."""

from .app import ORDER_GET, TRACKING_GET, create_app
from .auth import APP_KEY, APP_SECRET, AUTH_CODE, expected_sign
from .world import DEFAULT_CLOCK, ORDERS_AT_SCALE_1, SHAPES, World, build_world

__all__ = ["APP_KEY", "APP_SECRET", "AUTH_CODE", "DEFAULT_CLOCK", "ORDERS_AT_SCALE_1", "ORDER_GET", "SHAPES",
           "TRACKING_GET", "World", "build_world", "create_app", "expected_sign"]
