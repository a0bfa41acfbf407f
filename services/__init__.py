"""The demo: user, order, payment and inventory services built on the client library."""
