"""ec-node: a Python node for the every.channel broadcast mesh."""

__version__ = "0.1.0"
