"""The local stack: test processor, SMTP sink, private PostgreSQL/Redis, process runner."""
