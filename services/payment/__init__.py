"""The demo's payment service."""
