from channel_publisher.adapters.tables import metadata
from stocksync_common.migrations import run_env

run_env(metadata)
