"""The Shopee Open Platform v2 in `shipetl sandbox`: seeded shops, Shopee's checks, ground truth for tests."""

from .app import ShopeeSandbox, create_app
from .auth import PARTNER_ID, PARTNER_KEY, TEST_AUTH_CODE
from .generate import build_world
from .world import DEFAULT_CLOCK, SHOPS, World

__all__ = ["DEFAULT_CLOCK", "PARTNER_ID", "PARTNER_KEY", "SHOPS", "TEST_AUTH_CODE", "ShopeeSandbox", "World",
           "build_world", "create_app"]
