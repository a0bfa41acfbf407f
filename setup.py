"""Package layout: the hand-written packages plus the generated ones from gen/.

Generated code lives in gen/ but installs as ordinary packages, so
`from controlplane.v1 import registry_pb2` and `from demo.order.v1 import order_pb2` work
after installation. Everything else is declared in pyproject.toml.
"""

from setuptools import find_packages, setup

hand_written = find_packages(include=["controlplane", "controlplane.*", "services", "services.*"])
generated = find_packages("gen", include=["controlplane.v1", "controlplane.v1.*", "demo", "demo.*"])

setup(
    packages=hand_written + generated,
    package_dir={"controlplane.v1": "gen/controlplane/v1", "demo": "gen/demo"},
)
