"""The `stocksync` command line over the public API."""
