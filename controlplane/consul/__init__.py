"""Consul access shared by the control plane's bounded contexts."""
