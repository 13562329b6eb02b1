"""Analytics: history readers, datasets, backtests, training, model registry, scheduling."""
