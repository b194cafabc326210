"""Defining a search: its config, space, inputs, raw stages, ensembles and plan. Knows nothing of Dask."""
