"""What a search recorded: the record types, the append-only run log, cv_results and queries."""
