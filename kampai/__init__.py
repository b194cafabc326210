"""The framework under gridsearch: taxi-fare data, transformers, pipelines from config."""
