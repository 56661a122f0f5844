"""Ports and their implementations: everything that talks to the world outside the app."""
