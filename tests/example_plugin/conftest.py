"""shipetl-example is an outside distribution: its tests run where it is installed, not in shipetl's suite."""

from pathlib import Path

HERE = Path(__file__).parent


def pytest_ignore_collect(collection_path, config):
    if config.rootpath != HERE:  # collected from shipetl's own suite: tests/test_installed_plugins.py runs these
        return True
    return None
