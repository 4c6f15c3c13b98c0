"""``commerce``: the operator's command line (accounts, keys, database, jobs)."""
