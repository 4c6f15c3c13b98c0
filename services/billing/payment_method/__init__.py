"""The buyer's update-payment-method page and its JSON endpoints (API.md)."""
