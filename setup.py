"""Package layout: the hand-written packages plus the generated ones from gen/.

Generated code lives in gen/ but installs as an ordinary package, so `from controlplane.v1 import
registry_pb2` works after installation. The wheel holds `controlplane` and nothing else: the demo
(`services`, and its stubs in gen/demo) is not a library and must not claim top-level names in a user's
environment. The project's own environment (`make deps`) installs it editable with
CONTROLPLANE_DEV_INSTALL=1, which adds the demo packages to that one editable install.
Everything else is declared in pyproject.toml.
"""

import os

from setuptools import find_packages, setup

packages = find_packages(include=["controlplane", "controlplane.*"])
packages += find_packages("gen", include=["controlplane.v1", "controlplane.v1.*"])
packages += find_packages("gen", include=["controlplane.xds.v1", "controlplane.xds.v1.*"])
package_dir = {"controlplane.v1": "gen/controlplane/v1", "controlplane.xds.v1": "gen/controlplane/xds/v1"}
if os.environ.get("CONTROLPLANE_DEV_INSTALL") == "1":
    packages += find_packages(include=["services", "services.*"])
    packages += find_packages("gen", include=["demo", "demo.*"])
    package_dir["demo"] = "gen/demo"

setup(packages=packages, package_dir=package_dir)
