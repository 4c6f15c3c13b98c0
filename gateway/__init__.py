"""One base URL for the whole public surface: the route table and a local proxy."""
