"""A loopback fake of every built-in provider's API, with seeded data and injectable faults."""

from shipetl.sandbox.faults import Faults
from shipetl.sandbox.server import SandboxSettings, build_app, running_sandbox, serve

__all__ = ["Faults", "SandboxSettings", "build_app", "running_sandbox", "serve"]
