"""Ranking stage: build_features, leak-free training rows, the multi-objective LightGBM ranker."""
