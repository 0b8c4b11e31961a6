from stocksync_common.migrations import run_env

from channel_publisher.adapters.tables import metadata

run_env(metadata)
