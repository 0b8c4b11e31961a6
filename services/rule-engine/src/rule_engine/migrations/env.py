from stocksync_common.migrations import run_env

from rule_engine.adapters.tables import metadata

run_env(metadata)
