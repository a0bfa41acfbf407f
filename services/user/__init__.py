"""The demo's user service."""
