"""The account's event feed: every public event once, oldest first, behind a cursor
(``GET /v1/events?starting_after=``); recording an event also fans it out to the
account's webhook endpoints (``../webhooks``), in the same transaction."""
