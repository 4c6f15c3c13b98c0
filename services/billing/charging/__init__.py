"""Automatic charging: the scheduler, the charge job, the reconciler (PRODUCT §6.4)."""
