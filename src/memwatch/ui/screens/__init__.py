"""Screens pushed over the dashboard: detail, events, signal confirmation, help."""
