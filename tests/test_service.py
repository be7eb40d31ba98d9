"""The exporter's pollers across a configuration reload: kept, replaced, started, stopped."""

from __future__ import annotations

from conftest import wait_for_polls

from exporter.config import Config, parse_config
from exporter.exposition import RELOAD_SUCCESSFUL
from exporter.service import Exporter


def config(*targets: str) -> Config:
    lines = ["defaults: {interval: 1h, timeout: 30s, stale_after: 2h}", "targets:"]
    lines += [f"  - {{name: {t.split(':')[0]}, source: demo, packages: {t.split(':')[1]}, servers: 2}}"
              for t in targets]
    return parse_config("\n".join(lines) + "\n")


def test_reload_keeps_unchanged_pollers_and_replaces_the_rest() -> None:
    exporter = Exporter(config("same:5", "changed:5", "removed:5"))
    exporter.start()
    try:
        for poller in exporter.pollers.values():
            assert wait_for_polls(poller, 1, timeout=30)
        same, changed, removed = (exporter.pollers[n] for n in ("same", "changed", "removed"))
        body = exporter.metrics().text
        exporter.reload(config("same:5", "changed:6", "added:5"))
        assert list(exporter.pollers) == ["same", "changed", "added"]
        assert exporter.pollers["same"] is same  # and with it its last data
        assert exporter.pollers["same"].status().polls == 1
        assert exporter.pollers["changed"] is not changed
        assert wait_for_polls(exporter.pollers["added"], 1, timeout=30)
        removed._stop.wait(5)
        assert removed._stop.is_set()
        after = exporter.metrics().text
        assert after != body and b'target="removed"' not in after and b'target="added"' in after
        assert f"{RELOAD_SUCCESSFUL.name} 1".encode() in after
    finally:
        exporter.stop()


def test_a_refused_reload_changes_only_the_gauge() -> None:
    exporter = Exporter(config("one:5"))
    pollers = dict(exporter.pollers)
    before = exporter.metrics().text
    exporter.reload_failed()
    after = exporter.metrics().text
    assert exporter.pollers == pollers
    assert f"{RELOAD_SUCCESSFUL.name} 1".encode() in before
    assert f"{RELOAD_SUCCESSFUL.name} 0".encode() in after  # the cached body was not served again


def test_the_build_info_is_on_metrics_only_never_in_a_probe() -> None:
    exporter = Exporter(config("one:5"))
    assert b"sccm_exporter_build_info{" in exporter.metrics().text
    probe = exporter.probe("one")
    assert probe is not None and b'sccm_up{target="one"}' in probe.text
    assert b"sccm_exporter_build_info" not in probe.text
