"""The demo's inventory service."""
