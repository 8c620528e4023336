"""Approximate nearest-neighbour indexes over item vectors (inner product)."""
