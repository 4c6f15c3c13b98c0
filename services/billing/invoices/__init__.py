"""Invoices of subscriptions collected by invoice (PRODUCT §6.5, §6.6)."""
