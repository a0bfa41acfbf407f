"""Discovery-aware channels: dial a service by name, follow its passing instances live."""

from controlplane.discovery.channel import DiscoveryChannel, NoInstancesError, target_for

__all__ = ["DiscoveryChannel", "NoInstancesError", "target_for"]
