"""The benchmark (`make bench`) and the oversell simulator (`make simulate`)."""
