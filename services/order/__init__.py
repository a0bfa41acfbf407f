"""The demo's order service."""
