from stocksync_common.migrations import run_env

from stock_ledger.adapters.tables import metadata

run_env(metadata)
