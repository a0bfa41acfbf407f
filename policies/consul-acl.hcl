# The Consul ACL policy `controlplane serve` needs (Consul 1.8+), and nothing more:
#   consul acl policy create -name controlplane -rules @policies/consul-acl.hcl
#   consul acl token create -description "controlplane" -policy-name controlplane
# then give the token's SecretID to every replica: CONSUL_HTTP_TOKEN or `serve --consul-token`.
# tests/consul/test_acl.py runs the control plane against a Consul with ACLs on and default deny.

# Config layers, schemas and history (controlplane/config/), saga events, leases and definitions
# (controlplane/saga/), and the reachability probe's key: all under controlplane/.
key_prefix "controlplane/" {
  policy = "write"
}

# The registry registers, heartbeats and deregisters any service's instances on its agent, and reads
# every service's health (Discover, Watch, xDS); each saga replica registers its own liveness instance.
service_prefix "" {
  policy = "write"
}

# Health and catalog answers name nodes; instances are found on other agents by their node.
node_prefix "" {
  policy = "read"
}

# Saga leases are Consul sessions on this agent's node (create, renew, destroy, list).
session_prefix "" {
  policy = "write"
}

# /v1/agent/self: the node name of this replica's agent.
agent_prefix "" {
  policy = "read"
}
