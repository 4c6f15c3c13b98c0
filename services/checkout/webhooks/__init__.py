"""Processor webhooks: ``POST /webhooks/stripe/{account_id}`` (verify, de-duplicate, store,
enqueue) and their asynchronous processing by checkout's worker."""
