"""Debian 13 with Debian's own nodejs (20): `make deploy` (from a root shell with umask 077, as on hardened servers)
runs the proxy on the system node, login and spawn work."""
from __future__ import annotations

import os

import pytest

from pristine import Container
from scenario import (URL, demo_password, login_and_spawn, make_deploy, proxy_executable, require_default_ports,
                      require_tools, unit_show)

pytestmark = pytest.mark.system


def test_deploy_on_trixie_uses_the_system_node_and_a_user_gets_a_server():
    require_tools()
    require_default_ports()
    with Container("trixie", f"hrb-sys-trixie-{os.getpid()}") as box:
        assert box.run("command -v node").stdout.strip() == "/usr/bin/node"
        box.clone_checkout()
        out = make_deploy(box, umask="077")  # a hardened root shell: what users run must still be readable to them
        assert f"JupyterHub is running at {URL}/" in out
        assert proxy_executable(box) == "/usr/bin/node"
        assert unit_show(box, "UnitFileState")["UnitFileState"] == "enabled"
        login_and_spawn(demo_password(box))
