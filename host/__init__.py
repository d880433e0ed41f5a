"""jalkal: host toolkit for the village water-scheme controller."""

__version__ = "0.1.0"
