"""Re-ranking and policy: filters, diversity, freshness, exploration, explanations."""
