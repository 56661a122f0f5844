"""Submitting and running background jobs."""
