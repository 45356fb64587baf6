"""A study's own Ray node stays on loopback, or the study stops with one line (study/tuning/session.py).

Both ways an upgrade of Ray could break it are driven here without starting a cluster: the private switch
gone from ``ray._private.ray_constants``, and a node that came up on the machine's network address anyway.
"""

from __future__ import annotations

import pytest

from study.cli import run_cli
from study.errors import UsageError
from study.tuning import session


def test_a_ray_without_the_switch_is_one_line_before_anything_starts(monkeypatch, capsys):
    from ray._private import ray_constants

    monkeypatch.delattr(ray_constants, session.LOCAL_NODE_CONSTANT)
    monkeypatch.setattr(session.ray, "is_initialized", lambda: False)
    started = []
    monkeypatch.setattr(session.ray, "init", lambda **kw: started.append(kw))

    def main(argv):
        session.start_ray(None, "127.0.0.1", None)
        return 0

    assert run_cli(main, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Ray "), err
    assert "has no ray._private.ray_constants.ENABLE_RAY_CLUSTER" in err[0] and "nothing was started" in err[0]
    assert started == []


def test_the_switch_is_set_where_it_exists(monkeypatch):
    from ray._private import ray_constants

    monkeypatch.setattr(ray_constants, session.LOCAL_NODE_CONSTANT, True)
    monkeypatch.setenv(session.LOCAL_NODE_ENV, "1")
    session.local_node_only()
    assert getattr(ray_constants, session.LOCAL_NODE_CONSTANT) is False
    assert session.os.environ[session.LOCAL_NODE_ENV] == "0"


class FakeContext:
    def __init__(self, node: str, gcs: str) -> None:
        self.address_info = {"node_ip_address": node, "gcs_address": gcs}
        self.dashboard_url = None


@pytest.mark.parametrize(("node", "gcs", "shown"), [
    ("10.1.2.3", "10.1.2.3:6379", "node is at 10.1.2.3"),
    ("127.0.0.1", "192.168.0.7:6379", "GCS is at 192.168.0.7"),
])
def test_a_node_beyond_loopback_is_shut_down_with_one_line(monkeypatch, capsys, node, gcs, shown):
    from ray._private import ray_constants

    monkeypatch.setattr(ray_constants, session.LOCAL_NODE_CONSTANT, True)  # restored after the test
    monkeypatch.setenv(session.LOCAL_NODE_ENV, "1")
    monkeypatch.setattr(session.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(session.ray, "init", lambda **kw: FakeContext(node, gcs))
    shut = []
    monkeypatch.setattr(session.ray, "shutdown", lambda: shut.append(True))

    def main(argv):
        session.start_ray(None, "127.0.0.1", None)
        return 0

    assert run_cli(main, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the study's own Ray "), err
    assert shown in err[0] and "not on loopback" in err[0] and "shut down before any trial ran" in err[0]
    assert shut == [True]


@pytest.mark.parametrize("info", [
    {"node_ip_address": "127.0.0.1", "gcs_address": "127.0.0.1:6379"},
    {"node_ip_address": "::ffff:127.0.0.1", "gcs_address": "[::1]:6379"},
    {"node_ip_address": "127.0.0.1"},
])
def test_loopback_nodes_pass(info):
    session.check_loopback(info)


def test_a_missing_node_address_is_not_taken_for_loopback():
    with pytest.raises(UsageError, match="node is at \\(no address\\)"):
        session.check_loopback({})


def test_an_address_is_left_alone(monkeypatch):
    """``--address``: the cluster's own settings apply; the switch is not touched and nothing is checked."""
    from ray._private import ray_constants

    monkeypatch.delattr(ray_constants, session.LOCAL_NODE_CONSTANT)
    monkeypatch.setattr(session.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(session.ray, "init", lambda **kw: FakeContext("10.0.0.5", "10.0.0.5:6379"))
    session.start_ray("10.0.0.5:6379", "127.0.0.1", None)
