"""The oversell simulator (`make simulate`): batch sync against Stocksync's event path."""
