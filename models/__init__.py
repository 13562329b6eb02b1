"""Models: failure predictors, baselines and demand forecasters. Imports nothing from the project."""
