"""Lets ``python -m shipetl`` start the CLI."""

from .cli import main

main()
