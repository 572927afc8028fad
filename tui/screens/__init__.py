"""Screens pushed over the main view: confirmations, the order timeline, help."""
