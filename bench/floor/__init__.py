"""The bare pipeline the benchmark compares Stocksync against (see pipeline.py)."""
