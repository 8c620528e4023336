"""Data in and out: importers, validation, the synthetic generator, splits."""
