"""Clients for the model server."""
