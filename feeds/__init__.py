"""Feed adapters: sources of market data that emit normalized :class:`ticker.quote.Quote` objects."""
