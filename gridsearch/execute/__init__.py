"""Running a search: the engine, the Dask executor, worker tasks, batching, progress and Ctrl-C."""
