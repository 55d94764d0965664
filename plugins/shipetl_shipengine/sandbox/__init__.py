"""ShipEngine's API in `shipetl sandbox`: labels and tracking from a seeded world, auth and limits as live."""

from .app import create_app
from .generate import build_world
from .world import DEFAULT_CLOCK, World

__all__ = ["DEFAULT_CLOCK", "World", "build_world", "create_app"]
