"""The registry: which service instances run where, and whether they are healthy."""
