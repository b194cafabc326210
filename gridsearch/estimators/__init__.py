"""Scikit-learn's search classes, drop-in, with their fits run on the engine."""
