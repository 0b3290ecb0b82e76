"""A real headless Chromium reading MoQ groups with moq-dev's ``@moq/lite`` over WebTransport.

The browser dials the MoQ server straight (``https://127.0.0.1:PORT``, no relay), accepting its
self-signed certificate by ``serverCertificateHashes`` built from the hex SHA-256 list, subscribes
to one track of one broadcast and reads ``count`` whole groups (every frame of each). Python gets
them back as :class:`BrowserGroup` values, in the order the browser received them::

    groups = await browser_read_groups(url, server.cert_fingerprints(), "live", "chunks", count=5)
    assert all(published[g.sequence] == g.frames for g in groups)

How it works: a small aiohttp server on 127.0.0.1 serves ``tests/support/moq_lite_page/`` at ``/``
and ``web/node_modules`` (npm's pinned ``@moq/lite``; ``scripts/bootstrap.sh`` installs it) at
``/node_modules/``; the page's import map resolves the packages' bare imports, so nothing is
bundled. Playwright's async API (the same system Chromium and launch flags as
:mod:`support.browser`) opens the page and awaits ``readGroups(...)`` of ``reader.js`` through
``page.evaluate``: the page returns the frames base64-encoded, or rejects with a message naming
the step that failed, which comes back here as :class:`BrowserReadError` with the browser's log.
Everything is bounded by ``timeout_s``; the browser, its driver and the page server always stop.

@moq/lite's ``subscribe(name, priority)`` has no start group: the browser joins at the live edge,
so the publisher must go on making new groups until the read is done.

Without a Chromium, or without ``web/node_modules/@moq/lite``, the calling test is skipped with the
reason (:func:`require_browser_moq_lite`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from support.browser import CHROMIUM_ARGS, chromium_path

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "web" / "node_modules"
PAGE_DIR = Path(__file__).with_name("moq_lite_page")
MOQ_LITE = NODE_MODULES / "@moq" / "lite"

# Past the page's own deadline: time for its rejection to come back before we cut the evaluate.
_BACKSTOP_S = 10.0


class BrowserReadError(Exception):
    """The browser could not read the groups; the message is the page's, followed by its log."""


@dataclass(frozen=True)
class BrowserGroup:
    """One group as the browser read it: its sequence and every frame in order."""

    sequence: int
    frames: tuple[bytes, ...]

    @property
    def payload(self) -> bytes:
        """The frames joined (what ec-node's one-frame groups carry as the chunk object)."""
        return b"".join(self.frames)


def moq_lite_version() -> str | None:
    """The installed ``@moq/lite`` version, or None if ``web/node_modules`` lacks it."""
    try:
        meta = json.loads((MOQ_LITE / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = meta.get("version")
    return version if isinstance(version, str) else None


def require_browser_moq_lite() -> Path:
    """The Chromium to drive; skip the test if it or ``@moq/lite`` is missing (call before starting servers)."""
    exe = chromium_path()
    if moq_lite_version() is None:
        pytest.skip(f"no {MOQ_LITE.relative_to(ROOT)} (npm ci --prefix web; scripts/bootstrap.sh runs it)")
    return exe


def _resolve(rel: str) -> Path | None:
    """The file a request path names, only inside the page folder or web/node_modules."""
    root, rest = (NODE_MODULES, rel[len("node_modules/") :]) if rel.startswith("node_modules/") else (PAGE_DIR, rel)
    path = (root / (rest or "index.html")).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return None
    return path


async def _serve_file(request: web.Request) -> web.StreamResponse:
    path = _resolve(request.match_info["rel"])
    if path is None:
        raise web.HTTPNotFound()
    # a module script needs a JavaScript MIME type (.mjs is not in every mimetypes table)
    ctype = "text/javascript" if path.suffix in (".js", ".mjs") else None
    response = web.FileResponse(path, headers={"Cache-Control": "no-store"})
    if ctype:
        response.content_type = ctype
    return response


@contextlib.asynccontextmanager
async def _page_server() -> AsyncIterator[str]:
    """Serve the page and node_modules on 127.0.0.1; yields the page's base URL."""
    app = web.Application()
    app.router.add_get("/{rel:.*}", _serve_file)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}/"
    finally:
        await runner.cleanup()


# The page's module is imported inside the evaluate, so a module that fails to load (a missing
# dependency in the import map) rejects right here with the browser's message.
_READ_JS = """
async (args) => {
  const m = await import(new URL("reader.js", document.baseURI).href);
  return await m.readGroups(args);
}
"""


async def browser_read_groups(
    url: str,
    cert_sha256: list[str],
    broadcast: str,
    track: str,
    count: int,
    timeout_s: float = 60.0,
    *,
    artifacts: Path | None = None,
) -> list[BrowserGroup]:
    """Read ``count`` groups of ``broadcast``/``track`` from the MoQ server at ``url`` in a headless Chromium.

    ``cert_sha256``: hex SHA-256 of the server's certificate(s), as ``serverCertificateHashes``
    (Chromium takes only ECDSA certificates valid for at most 14 days). Returns the groups in the
    order the browser got them, each with all its frames. Raises BrowserReadError with the page's
    message (connect refused, broadcast or track not found, track ended early, timeout...) and the
    browser's console. ``artifacts``: a folder to keep ``moq_lite_browser.log`` in.
    """
    if count < 1:
        raise ValueError("count must be >= 1")
    exe = require_browser_moq_lite()
    from playwright.async_api import Error as PlaywrightError  # imported late: a skip must not need Playwright
    from playwright.async_api import async_playwright

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    said: list[str] = []

    def left_ms() -> float:
        return max(1.0, (deadline - loop.time()) * 1000)

    def fail(message: str) -> BrowserReadError:
        return BrowserReadError(message + "\nbrowser log:\n" + "\n".join(said or ["(empty)"]))

    args: dict[str, Any] = {
        "url": url,
        "certSha256": [h.lower() for h in cert_sha256],
        "broadcast": broadcast,
        "track": track,
        "count": count,
    }
    try:
        async with contextlib.AsyncExitStack() as stack:
            base = await stack.enter_async_context(_page_server())
            profile = stack.enter_context(tempfile.TemporaryDirectory(prefix="chromium-profile-"))
            pw = await stack.enter_async_context(async_playwright())
            context = await pw.chromium.launch_persistent_context(
                profile, executable_path=str(exe), headless=True, args=list(CHROMIUM_ARGS), timeout=left_ms()
            )
            stack.push_async_callback(context.close)  # ends the browser; leaving async_playwright() ends the driver
            page = context.pages[0] if context.pages else await context.new_page()
            page.on("console", lambda m: said.append(f"console {m.type}: {m.text}"))
            page.on("pageerror", lambda e: said.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: said.append(f"request failed: {r.url}: {r.failure}"))
            await page.goto(base + "index.html", timeout=left_ms())
            args["timeoutMs"] = round(left_ms())
            try:
                result = await asyncio.wait_for(page.evaluate(_READ_JS, args), left_ms() / 1000 + _BACKSTOP_S)
            except TimeoutError:
                raise fail(f"the page did not answer within {timeout_s:g} s (+{_BACKSTOP_S:g} s)") from None
    except PlaywrightError as exc:
        # Playwright's message is "Page.evaluate: Error: <the page's message>\n    at <stack>..."
        raise fail(exc.message.split("\n    at ", 1)[0].strip()) from None
    finally:
        if artifacts is not None:
            artifacts.mkdir(parents=True, exist_ok=True)
            (artifacts / "moq_lite_browser.log").write_text("\n".join(said) + "\n")
    log.info("@moq/lite %s read %d groups, negotiated %s", moq_lite_version(), count, result.get("version"))
    return [BrowserGroup(int(g["sequence"]), tuple(base64.b64decode(f) for f in g["frames"])) for g in result["groups"]]
