"""The package every service imports: configuration, database, money, events, broker, outbox.

Nothing in here imports a service, and nothing here does I/O at import time.
"""
