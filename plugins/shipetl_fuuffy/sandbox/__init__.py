"""Fuuffy's API in `shipetl sandbox`: orders and SF Express / Kerry routes from a seeded world."""

from .app import DEFAULT_CLIENTS, create_app
from .world import DEFAULT_CLOCK, FOREIGN_ORDER_IDS, HK, World, build_world

__all__ = ["DEFAULT_CLIENTS", "DEFAULT_CLOCK", "FOREIGN_ORDER_IDS", "HK", "World", "build_world", "create_app"]
