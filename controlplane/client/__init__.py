"""One way to connect to the control plane: `connect()` returns the `Connection` every client of it uses.

    from controlplane.client import connect, ClientTLS
    cp = connect("cp-1:50051,cp-2:50051", credentials=ClientTLS(ca="ca.pem", cert="me.pem", key="me.key"))
    config = ConfigClient("orders", cp).start()
    channel = DiscoveryChannel("payments", cp)
    SelfRegistration("orders", "10.0.0.7", 50061, control_plane=cp).register()

ConfigClient, AsyncConfigClient, DiscoveryChannel, SelfRegistration, the service hosts and the CLI take a
Connection, or an address string, which is connected with the TLS and token the environment names
(`CONTROLPLANE_TLS_CA`/`_CERT`/`_KEY`, `CONTROLPLANE_TOKEN`; plaintext when none is set).
"""

from controlplane.client.connection import TOKEN_ENV, Connection, as_connection, connect
from controlplane.security.tls import ClientTLS, TLSConfigError

__all__ = ["TOKEN_ENV", "ClientTLS", "Connection", "TLSConfigError", "as_connection", "connect"]
