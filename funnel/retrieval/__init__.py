"""Retrieval: candidate sources (the baselines are the first of them)."""
