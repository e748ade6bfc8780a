"""ticker: a real-time stock-quote push server on Tornado."""

__version__ = "0.1.0"
