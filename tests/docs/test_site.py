"""The documentation site (mkdocs.yml): built with ``mkdocs build --strict``, so a broken link,
a missing anchor, an unresolved API reference or a page left out of the navigation fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 600


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(site)],
        cwd=config.parent, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)


def test_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    cache = ROOT / ".cache" / "mkdocs-jupyter"
    had_cache = cache.exists()
    r = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout[-4000:]}{r.stderr[-8000:]}"
    for page in ["index.html", "notebooks/index.html", "notebooks/01-discover/index.html",
                 "api/index.html", "api/api/index.html", "evidence/index.html"]:
        assert (site / page).is_file(), page
    api = (site / "api" / "api" / "index.html").read_text()
    assert "compare_models" in api and "DiscoverConfig" in api    # rendered from docstrings
    notebook = (site / "notebooks" / "01-discover" / "index.html").read_text()
    assert "faithfulness_interval" in notebook                     # the notebook's source
    # nothing was written next to the sources
    assert not list((ROOT / "docs").rglob("*.html"))
    assert had_cache or not cache.exists(), "mkdocs-jupyter's cache: keep cache: false"


def test_strict_build_fails_on_a_broken_link_and_a_missing_reference(tmp_path):
    """What the strict settings of mkdocs.yml are for, shown on a two-page site."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the guide](guide.md#no-such-section), "
                                   "[nothing](missing.md) and [`x`][acdc_engine.no_such_name].\n")
    (docs / "guide.md").write_text("# Guide\n\n## A section\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text("site_name: t\nvalidation:\n  anchors: warn\n"
                      "plugins:\n  - search\n  - autorefs\n"
                      "nav:\n  - index.md\n  - guide.md\n")
    r = mkdocs_build(config, tmp_path / "site")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "missing.md" in out and "no-such-section" in out, out
    assert "acdc_engine.no_such_name" in out, out


def test_mkdocs_yml_keeps_strictness():
    """Validation may be tuned (as mkdocs.yml does, to warn), never switched off."""
    text = (ROOT / "mkdocs.yml").read_text()
    assert "strict: false" not in text
    for key in ("omitted_files", "absolute_links", "unrecognized_links", "anchors"):
        assert f"{key}: warn" in text, key
