"""AIST core: plugin interfaces, registry, recipes, stage runner and CLI.

Importing this package never imports torch; plugins do, inside their own modules.
"""

__version__ = "0.1.0"
