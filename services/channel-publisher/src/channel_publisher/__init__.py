"""channel-publisher: pushes channel quantities to marketplace APIs, never stale."""
