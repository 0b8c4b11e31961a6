from stocksync_common.migrations import run_env

from order_ingest.adapters.tables import metadata

run_env(metadata)
