"""A plugin that fails to import is named (entry point and distribution), skipped with a hint
to block it, listed as broken by ``acdc plugins``, and the other plugins still load."""

from __future__ import annotations

import os
import subprocess
import sys

import pluggy
import pytest

from acdc_engine import hookspecs
from acdc_engine.plugins import manager


def _install_fake_dist(root, module_body: str, name: str = "brokenplug") -> None:
    """A distribution ``acdc-broken-plugin 0.1`` on ``root`` whose entry point ``name``
    points at a module with ``module_body``."""
    info = root / "acdc_broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acdc-broken-plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(f"[acdc_engine]\n{name} = {name}_mod\n")
    (root / f"{name}_mod.py").write_text(module_body)


@pytest.fixture
def fresh_manager(monkeypatch):
    monkeypatch.setattr(manager, "_BROKEN", {})
    monkeypatch.setattr(manager, "_DISTS", {})
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def test_a_plugin_that_fails_to_import_is_skipped_and_named(tmp_path, monkeypatch, capsys,
                                                            fresh_manager):
    _install_fake_dist(tmp_path, "import no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    n = manager.load_entry_points(fresh_manager)
    err = capsys.readouterr().err
    assert ("plugin 'brokenplug' (entry point 'brokenplug = brokenplug_mod' of "
            "acdc-broken-plugin 0.1) failed to load: ModuleNotFoundError: No module named "
            "'no_such_module_xyz'") in err
    assert "ACDC_BLOCK_PLUGINS=brokenplug" in err
    assert not fresh_manager.has_plugin("brokenplug")
    assert {"builtins", "tasks", "tracr"} <= {name for name, _ in
                                             fresh_manager.list_name_plugin()}
    assert n >= 3
    assert manager._BROKEN["brokenplug"].startswith("ModuleNotFoundError")


def test_a_plugin_whose_hook_is_invalid_is_skipped(tmp_path, monkeypatch, capsys,
                                                   fresh_manager):
    body = ("from acdc_engine.hookspecs import hookimpl\n"
            "@hookimpl\ndef acdc_tasks(unexpected_argument):\n    return []\n")
    _install_fake_dist(tmp_path, body, name="badhook")
    monkeypatch.syspath_prepend(str(tmp_path))
    manager.load_entry_points(fresh_manager)
    assert "plugin 'badhook'" in capsys.readouterr().err
    assert not fresh_manager.has_plugin("badhook")


def test_a_blocked_broken_plugin_is_not_even_imported(tmp_path, monkeypatch, capsys,
                                                      fresh_manager):
    _install_fake_dist(tmp_path, "raise SystemError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_manager.set_blocked("brokenplug")
    manager.load_entry_points(fresh_manager)
    assert "brokenplug" not in capsys.readouterr().err


@pytest.mark.slow
def test_acdc_plugins_lists_the_broken_plugin_and_discover_goes_on(tmp_path):
    _install_fake_dist(tmp_path, "raise RuntimeError('this plugin is broken')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "acdc_engine.cli", "plugins"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert ("brokenplug  (acdc-broken-plugin 0.1)  BROKEN: RuntimeError: this plugin is broken"
            in out.stdout)
    assert "model family gpt2" in out.stdout  # the good plugins are all there
    out = subprocess.run([sys.executable, "-m", "acdc_engine.cli", "discover", "--task",
                          "no-such-task", "--no-track"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2 and "unknown task 'no-such-task'" in out.stderr
    assert "Traceback" not in out.stderr
