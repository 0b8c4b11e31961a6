"""The merchant console: Stocksync's public API as pages a merchant opens in a browser."""
