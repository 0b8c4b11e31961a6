"""The embedded default: everything Stocksync needs, started from Python wheels."""
