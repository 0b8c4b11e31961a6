"""rule-engine: the merchant's channel rules turn available stock into channel quantities."""
