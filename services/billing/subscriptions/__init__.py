"""Subscriptions: birth, lifecycle, API (PRODUCT §6)."""
