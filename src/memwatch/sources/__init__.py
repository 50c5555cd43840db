"""Snapshot sources: live, /proc-only, and replay."""
