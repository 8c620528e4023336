"""Training: model selection, versioned bundles and the registry of versions."""
