"""A real headless Chromium for browser tests, driven by Playwright's sync API, always closed afterwards.

Uses the system Chromium (``$EC_NODE_CHROMIUM``, else ``/usr/bin/chromium``; ``scripts/test.sh`` installs
Debian's ``chromium`` where it can) rather than a Playwright-downloaded build, with a fresh profile per
use. Without a Chromium the test is skipped with the reason.

    with browser_page(tmp_path, artifacts=artifacts_dir(request, tmp_path)) as bp:
        bp.page.goto(url)
        wait_playing(bp.page, seconds=4)
        screenshot(bp.page, bp.artifacts / "playing.png")
        assert not bp.page_errors, bp.log()
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM_ENV = "EC_NODE_CHROMIUM"
ARTIFACTS_ENV = "EC_NODE_ARTIFACTS"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)
# A guard against a hung page, not a performance threshold: waits normally end long before it.
WAIT_TIMEOUT_S = 120.0


def chromium_path() -> Path:
    """The Chromium executable to drive, or skip the test saying why there is none."""
    env = os.environ.get(CHROMIUM_ENV)
    path = Path(env or DEFAULT_CHROMIUM)
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"${CHROMIUM_ENV}={env}" if env else DEFAULT_CHROMIUM
        pytest.skip(f"no Chromium at {where} (scripts/test.sh installs Debian's chromium when run as root with apt)")
    return path


def artifacts_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where a test keeps screenshots and logs: ``$EC_NODE_ARTIFACTS/<test name>``, else ``tmp_path``."""
    root = os.environ.get(ARTIFACTS_ENV)
    if not root:
        return tmp_path
    d = Path(root) / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class BrowserPage:
    """A page in a fresh Chromium, with everything it said: console lines, uncaught errors, failed requests."""

    page: Page
    artifacts: Path
    console: list[str] = field(default_factory=list)  # "<type>: <text>"
    page_errors: list[str] = field(default_factory=list)  # uncaught exceptions
    failed_requests: list[str] = field(default_factory=list)  # "<url>: <failure>"

    def log(self) -> str:
        """Everything captured, for an assertion message."""
        parts = [
            "console:",
            *self.console,
            "page errors:",
            *self.page_errors,
            "failed requests:",
            *self.failed_requests,
        ]
        return "\n".join(parts)


@contextlib.contextmanager
def browser_page(
    tmp_path: Path, *, artifacts: Path | None = None, init_script: str | None = None
) -> Iterator[BrowserPage]:
    """A page in a new headless Chromium (fresh profile); the browser and Playwright's driver stop on exit.

    ``init_script`` runs in the page before any of its own scripts (e.g. ``window.EC_FORCE_HLSJS = true``).
    On exit the captured log is written to ``<artifacts>/browser.log``.
    """
    exe = chromium_path()
    from playwright.sync_api import sync_playwright  # imported late: a skip must not need Playwright

    out = artifacts if artifacts is not None else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(exe),
            headless=True,
            args=list(CHROMIUM_ARGS),
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(WAIT_TIMEOUT_S * 1000)
            bp = BrowserPage(page=page, artifacts=out)
            page.on("console", lambda m: bp.console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: bp.page_errors.append(str(e)))
            page.on("requestfailed", lambda r: bp.failed_requests.append(f"{r.url}: {r.failure}"))
            if init_script:
                page.add_init_script(init_script)
            try:
                yield bp
            finally:
                (out / "browser.log").write_text(bp.log() + "\n")
        finally:
            context.close()  # ends the browser process; leaving sync_playwright() ends the driver


# Resolves once the video has played `seconds` since it first played during this wait: its currentTime
# moved on that far and the ranges it really played (not skipped by a seek) add up to as much.
# A media error ends the wait at once with the error's code and message.
_PLAYING_JS = """
([selector, seconds]) => {
  const v = document.querySelector(selector);
  if (!v) return false;
  if (v.error) throw new Error(`media error ${v.error.code}: ${v.error.message || "(no message)"}`);
  const w = (window.__ecPlayWait = window.__ecPlayWait || {});
  const moving = !v.paused && v.readyState >= 3;
  if (w.base === undefined) {
    if (!moving) return false;
    w.base = v.currentTime;
  }
  let played = 0;
  for (let i = 0; i < v.played.length; i++) played += v.played.end(i) - v.played.start(i);
  return v.currentTime - w.base >= seconds && played >= seconds;
}
"""


def wait_playing(
    page: Page, seconds: float = 4.0, *, selector: str = "video", timeout_s: float = WAIT_TIMEOUT_S
) -> float:
    """Wait until the video has played ``seconds`` with no media error; return its currentTime.

    Driven by the page (Playwright re-evaluates on each animation frame), not by sleeps. Raises
    Playwright's Error if the video reports a media error, TimeoutError if it never gets there.
    """
    page.evaluate("() => { delete window.__ecPlayWait; }")
    page.wait_for_function(_PLAYING_JS, arg=[selector, seconds], timeout=timeout_s * 1000)
    return float(page.evaluate("(s) => document.querySelector(s).currentTime", selector))


def wait_text(page: Page, selector: str, text: str, *, timeout_s: float = WAIT_TIMEOUT_S) -> None:
    """Wait until the element's text (trimmed) is exactly ``text``; driven by the page, not by sleeps."""
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return !!e && e.textContent.trim() === t; }",
        arg=[selector, text],
        timeout=timeout_s * 1000,
    )


def screenshot(page: Page, path: Path) -> Path:
    """Keep a PNG of the page at ``path`` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
