"""stock-ledger: stock items, the append-only ledger, reservations and stock versions."""
