"""The feature store: one definition gives point-in-time training data and online serving values."""
