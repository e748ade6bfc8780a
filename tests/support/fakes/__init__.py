"""Fake upstream market-data providers for the feed tests (local, ephemeral ports)."""
