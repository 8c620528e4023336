"""Offline evaluation: protocols, metrics, the evaluation runner."""
