"""Trust: TLS and mTLS credentials, caller identities, and who may do what on the control plane.

- `tls.py`: certificate files -> gRPC server and channel credentials, from flags or environment variables.
- `identity.py`: the caller's identity (a SPIFFE-style URI SAN of its client certificate, or a bearer token).
- `policy.py`: the authorization policy file and its rules; `authz.py`: the server interceptor enforcing it.
- `devcerts.py`: a local CA and certificates for `make up TLS=1` and the tests (needs `cryptography`).
"""
