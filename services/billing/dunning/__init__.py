"""Dunning: what happens after an automatic charge fails (PRODUCT §6.4, §11)."""
