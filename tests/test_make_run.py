"""`make run` from a checkout: the milter socket under var/, not in Postfix's queue
directory, which a checkout run by any user cannot count on (nor on a postfix group)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from extrusion import config as configmod

REPO = Path(__file__).resolve().parent.parent


def _checkout_config(tmp_path: Path, config: Path) -> configmod.Config:
    out = tmp_path / "checkout.toml"
    subprocess.run(["make", "-s", "-C", str(REPO), f"CONFIG={config}",
                    f"CHECKOUT_CONFIG={out}", str(out)], check=True, timeout=60,
                   capture_output=True)
    return configmod.load(out)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_serves_the_milter_under_var_with_the_process_group(tmp_path: Path) -> None:
    shipped = configmod.load(REPO / "conf" / "extrusion.toml")
    assert shipped.milter.socket == "unix:/var/spool/postfix/extrusion/milter.sock"
    cfg = _checkout_config(tmp_path, REPO / "conf" / "extrusion.toml")
    assert cfg.milter.socket == f"unix:{REPO}/var/milter.sock"
    assert cfg.milter.socket_group == ""
    assert cfg.milter.socket_mode == 0o660
    # the checkout's own store, the one `extrusion senders` in the checkout reads
    assert cfg.store.url == f"sqlite:///{REPO}/var/extrusion.db"
    # everything else as shipped
    assert configmod.as_dict(cfg) | {"milter": {}} == configmod.as_dict(shipped) | {"milter": {}}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_keeps_a_socket_the_config_chose(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text('[milter]\nsocket = "unix:/run/extrusion/milter.sock"\n'
                   'socket_group = "postfix"\n')
    cfg = _checkout_config(tmp_path, own)
    assert (cfg.milter.socket, cfg.milter.socket_group) == (
        "unix:/run/extrusion/milter.sock", "postfix")
