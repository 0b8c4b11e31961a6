"""Plumbing shared by every Stocksync service. It holds no business rules."""
