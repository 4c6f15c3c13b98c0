"""Subscription analytics and the dunning dry run, from billing's own tables."""
