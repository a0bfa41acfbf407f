"""Host a gRPC service of your own: interceptors, health, reflection, registration, config, graceful stop.

See `host.ServiceHost` (sync) and `host.AioServiceHost` (asyncio), and docs/interceptors.md.
"""

from controlplane.service.host import AioServiceHost, HostSettings, ServiceHost

__all__ = ["AioServiceHost", "HostSettings", "ServiceHost"]
