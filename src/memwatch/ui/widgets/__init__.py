"""Widgets of the dashboard, one role per module."""
