"""The winners: promotion to MLflow, prediction from the registry, the registry table."""
