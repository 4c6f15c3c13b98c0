"""Outbound webhooks: endpoints (``/v1/webhook_endpoints``), signed deliveries sent in
order per endpoint with retries and backoff, held while an endpoint fails and replayed
when it recovers, and the delivery log. Addresses are vetted against SSRF (``ssrf.py``)."""
