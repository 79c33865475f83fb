"""The ``lopt`` command line (DESIGN.md: How users meet it): commands, typed configs, preflight
checks and recipes."""
from lopt.cli.commands import main

__all__ = ["main"]
