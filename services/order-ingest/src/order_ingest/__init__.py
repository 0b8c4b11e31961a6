"""order-ingest: webhooks from every channel, verified, deduplicated, normalised to orders.v1."""
