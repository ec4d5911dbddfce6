"""Screenshots of each view for docs/view.md (not a test; run by hand).

    python tests/view/screenshots.py docs/img      # tiny-ioi on ioi, headless system Chromium
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def main(out: str, chromium: str = "/usr/bin/chromium") -> None:
    from playwright.sync_api import sync_playwright

    from acdc_engine.view import Session

    torch.set_num_threads(1)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = Session.open("tiny-ioi", "ioi")
    s.circuit.discover("eap", 40)
    server = s.serve()
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = b.new_page(viewport={"width": 1280, "height": 860})
            page.goto(server.url)
            page.wait_for_selector("#map rect[data-node='a3.0']")

            def console(text: str, wait: str) -> None:
                page.fill("#console-input", text)
                page.press("#console-input", "Enter")
                page.wait_for_selector(wait)

            page.click("#map rect[data-node='a2.1']")
            page.wait_for_selector("#interventions li:has-text('ablate a2.1')")
            console("freeze m1", "#interventions li:has-text('freeze m1')")
            page.screenshot(path=str(out_dir / "view-page.png"), full_page=True)
            page.locator("main").screenshot(path=str(out_dir / "view-map.png"))
            page.fill("#head-node", "a3.*")
            page.click("#mode-qk")
            page.wait_for_selector("#heads-view svg[data-head='a3.0']")
            page.locator("#views").screenshot(path=str(out_dir / "view-qk.png"))
            page.fill("#head-node", "a3.0")
            page.click("#mode-ov")
            page.wait_for_selector("#ov-view")
            page.locator("#views").screenshot(path=str(out_dir / "view-ov.png"))
            console("lens 0", "#lens-table")
            page.locator("#views").screenshot(path=str(out_dir / "view-lens.png"))
            console("tokens 0 integrated_gradients", "#token-chips")
            page.locator("#views").screenshot(path=str(out_dir / "view-tokens.png"))
            console("ablate a9.9", "#console-log .err")
            page.locator("#console").screenshot(path=str(out_dir / "view-console.png"))
            b.close()
    finally:
        server.stop()
    print("\n".join(sorted(str(p) for p in out_dir.glob("view-*.png"))))


if __name__ == "__main__":
    main(*sys.argv[1:])
