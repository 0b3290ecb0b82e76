// ec-node watch page: polls /status about once a second, shows what the node is doing, and plays the
// node's HLS as soon as /status names a playlist. The browser's built-in HLS player is used where
// video.canPlayType says it can, else hls.js (/vendor/hls.min.js, loaded only when needed).
// window.ecWatch = {engine: "native" | "hls.js" | null, errors: [string], status: last /status} for tests.
// Force hls.js with window.EC_FORCE_HLSJS = true (set before this script runs) or ?engine=hls.js;
// ?engine=native forces the built-in player.
"use strict";

(() => {
  const POLL_MS = 1000;
  const HLSJS_URL = "/vendor/hls.min.js";
  const HLS_MIME = "application/vnd.apple.mpegurl";
  const STATE_TEXT = {
    waiting: "waiting for the first verified segment",
    live: "live",
    ended: "ended",
  };

  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const ec = (window.ecWatch = { engine: null, errors: [], status: null });

  let playing = null; // the playlist URL the player was started with
  let hls = null; // the hls.js instance, when that is the engine
  let recoveredMedia = false; // hls.js media errors are recovered once per start
  let hlsjsLoad = null; // Promise<Hls> once loading was asked for
  let hlsjsMissing = false; // /vendor/hls.min.js is not served (npm was unavailable on the node)

  // -- small DOM helpers (textContent only: status fields come from the network) --------------------
  function setText(id, value) {
    const el = $(id);
    const s = value === null || value === undefined || value === "" ? "\u2013" : String(value);
    if (el.textContent !== s) el.textContent = s;
  }

  function setNote(id, s) {
    const el = $(id);
    if (el.textContent !== s) el.textContent = s;
  }

  // A peer whose track finished (the stream ended) is not a fault: shown as ended, not as down.
  function peerLabel(p) {
    if (p.up) return "\u25B2 up";
    if (p.state === "ended") return "\u25A0 ended";
    if (p.state === "waiting") return "\u2026 waiting";
    return `\u25BC ${p.state || "down"}`;
  }

  function peerClass(p) {
    return p.up ? "up" : p.state === "ended" || p.state === "waiting" ? "muted" : "down";
  }

  function item(text, cls) {
    const li = document.createElement("li");
    li.textContent = text;
    if (cls) li.className = cls;
    return li;
  }

  // -- errors ----------------------------------------------------------------------------------------
  function fail(message) {
    ec.errors.push(message);
    console.error("ec-watch:", message);
    $("error-list").appendChild(item(message));
    $("errors").hidden = false;
  }

  function clearErrorBox() {
    $("error-list").replaceChildren();
    $("errors").hidden = true;
  }

  // -- engines ---------------------------------------------------------------------------------------
  function wantedEngine() {
    const q = new URLSearchParams(location.search).get("engine");
    if (window.EC_FORCE_HLSJS === true || q === "hls.js" || q === "hlsjs") return "hls.js";
    if (q === "native") return "native";
    return null;
  }

  function nativeCanPlay() {
    return video.canPlayType(HLS_MIME) !== "";
  }

  function loadHlsJs() {
    if (window.Hls) return Promise.resolve(window.Hls);
    if (!hlsjsLoad) {
      hlsjsLoad = new Promise((resolve, reject) => {
        const s = document.createElement("script");
        s.src = HLSJS_URL;
        s.onload = () => (window.Hls ? resolve(window.Hls) : reject(new Error("hls.js loaded without defining Hls")));
        s.onerror = () => {
          hlsjsMissing = true;
          showEngineNote();
          reject(new Error(`hls.js is not available on this node (${HLSJS_URL})`));
        };
        document.head.appendChild(s);
      });
    }
    return hlsjsLoad;
  }

  // Whether the node serves hls.js at all, only to say so: the built-in player may not need it.
  function probeHlsJs() {
    // one byte, not HEAD: Chromium reports body-less HEAD responses as aborted requests
    fetch(HLSJS_URL, { headers: { Range: "bytes=0-0" }, cache: "no-store" })
      .then((r) => {
        hlsjsMissing = !r.ok;
        showEngineNote();
      })
      .catch(() => {});
  }

  function showEngineNote() {
    const engine =
      ec.engine === "native"
        ? "the browser's built-in HLS player"
        : ec.engine === "hls.js"
          ? `hls.js ${window.Hls && window.Hls.version ? window.Hls.version : ""}`.trim()
          : null;
    setText("engine", engine);
    let note = engine ? `Playing with ${engine}.` : "";
    if (hlsjsMissing) note += " hls.js is not installed on this node, so only the browser's built-in HLS can play.";
    if (!playing) note = `Waiting for the first verified segment.${hlsjsMissing ? " (hls.js is not installed on this node: built-in HLS only.)" : ""}`;
    setNote("player-note", note.trim());
  }

  function playVideo() {
    const p = video.play();
    if (p && p.catch) {
      p.catch((e) => {
        if (e && e.name === "NotAllowedError") setNote("player-note", "Press play to start the video.");
        else if (e && e.name !== "AbortError") console.warn("ec-watch: play():", e);
      });
    }
  }

  function stopPlayer() {
    if (hls) {
      hls.destroy();
      hls = null;
    }
    ec.engine = null;
    video.removeAttribute("src");
    video.load();
  }

  async function start(url) {
    stopPlayer();
    clearErrorBox();
    playing = url;
    recoveredMedia = false;
    const want = wantedEngine();
    if (want === "native" || (want === null && nativeCanPlay())) {
      ec.engine = "native";
      showEngineNote();
      video.src = url;
      playVideo();
      return;
    }
    let Hls;
    try {
      Hls = await loadHlsJs();
    } catch (e) {
      if (playing === url) {
        fail(want === "hls.js" ? `hls.js was asked for, but ${e.message}.` : `This browser has no built-in HLS player and ${e.message}.`);
      }
      return;
    }
    if (playing !== url) return; // superseded while hls.js was loading
    if (!Hls.isSupported()) {
      fail("This browser can play HLS neither natively nor with hls.js (no Media Source Extensions).");
      return;
    }
    startHlsJs(Hls, url);
  }

  function startHlsJs(Hls, url) {
    ec.engine = "hls.js";
    showEngineNote();
    const h = new Hls({
      lowLatencyMode: false, // plain HLS: ~2 s segments, no LL-HLS parts
      liveSyncDurationCount: 3, // join three segments behind the live edge
      liveMaxLatencyDurationCount: 10, // fall this far behind and hls.js jumps forward
      backBufferLength: 60,
      enableWorker: true,
    });
    hls = h;
    h.on(Hls.Events.MANIFEST_PARSED, () => playVideo());
    h.on(Hls.Events.ERROR, (_event, data) => {
      if (hls !== h) return;
      if (!data.fatal) {
        console.warn("ec-watch: hls.js:", data.type, data.details);
        return;
      }
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recoveredMedia) {
        recoveredMedia = true;
        console.warn("ec-watch: hls.js media error, recovering once:", data.details);
        setNote("player-note", `Recovering from a media error (${data.details}).`);
        h.recoverMediaError();
        return;
      }
      const why = data.error && data.error.message ? `: ${data.error.message}` : "";
      fail(`hls.js fatal ${data.type} error ${data.details}${why}`);
      h.destroy();
      hls = null;
    });
    h.loadSource(url);
    h.attachMedia(video);
  }

  video.addEventListener("error", () => {
    if (ec.engine !== "native" || !video.error) return; // hls.js reports through its own ERROR events
    fail(`media error ${video.error.code}: ${video.error.message || "(no message)"}`);
  });
  video.addEventListener("ended", () => setNote("player-note", "End of the recording."));
  $("retry").addEventListener("click", () => {
    if (playing) start(playing);
  });

  // -- status ----------------------------------------------------------------------------------------
  function sameOrigin(url) {
    try {
      return new URL(url, location.href).origin === location.origin;
    } catch {
      return false;
    }
  }

  function render(s) {
    ec.status = s;
    const ch = s.channel || null;
    const name = (ch && ch.name) || s.broadcast || "Unknown channel";
    const number = (ch && ch.guide_number) || "";
    setNote("channel-name", name);
    setNote("guide-number", number);
    const title = `${name}${number ? " " + number : ""} \u00B7 ec-node`;
    if (document.title !== title) document.title = title;
    video.setAttribute("aria-label", `Video of ${name}`);

    const st = $("state");
    if (st.dataset.state !== s.state) st.dataset.state = s.state || "";
    setNote("state", STATE_TEXT[s.state] || String(s.state || "unknown"));
    setNote("reason", s.reason || "");

    const c = s.counters || {};
    setText("segments", c.segments);
    setText("rendition-segments", c.rendition_segments);
    setText("dropped", c.dropped);
    setText("manifests", c.manifests);
    const rejected = Object.entries(c.rejected || {}).filter(([, n]) => n > 0);
    const rej = $("rejected");
    if (rejected.length === 0) {
      setText("rejected", "none");
    } else {
      const ul = document.createElement("ul");
      for (const [reason, n] of rejected.sort((a, b) => (a[0] < b[0] ? -1 : 1))) ul.appendChild(item(`${reason}: ${n}`));
      rej.replaceChildren(ul);
    }

    const peers = s.peers || [];
    const pl = $("peers");
    if (peers.length === 0) pl.replaceChildren(item("none yet", "muted"));
    else pl.replaceChildren(...peers.map((p) => item(`${peerLabel(p)} \u00B7 ${p.name} (${p.track})`, peerClass(p))));

    const l = s.latest;
    setText("latest-chunk", l ? `#${l.chunk_index} (${(l.duration_ms / 1000).toFixed(2)} s)` : null);
    setText("latency", l && typeof l.latency_ms === "number" ? `${l.latency_ms.toFixed(1)} ms` : null);

    setText("broadcast", s.broadcast);
    setText("stream-id", s.stream_id);
    setText("play-url", s.play);

    if (s.play && s.play !== playing) {
      if (sameOrigin(s.play)) start(s.play);
      else if (!ec.errors.includes(`refusing a playlist from another origin: ${s.play}`)) fail(`refusing a playlist from another origin: ${s.play}`);
    } else if (!s.play && !playing) {
      showEngineNote();
    }
  }

  async function poll() {
    try {
      const r = await fetch("/status", { cache: "no-store" });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      render(await r.json());
      setNote("status-note", "");
    } catch (e) {
      setNote("status-note", `Cannot reach the node (${e.message}); retrying.`);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  probeHlsJs();
  poll();
})();
