"""Upcoming-payment reminders (PRODUCT §6.4)."""
