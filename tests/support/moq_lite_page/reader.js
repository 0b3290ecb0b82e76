// Reads `count` groups of one track with @moq/lite over WebTransport and returns them base64-encoded.
//
// Driven by tests/support/moq_lite.py through page.evaluate (a dynamic import of this module, then
// readGroups(...)); whatever fails here rejects that promise with a message naming the step, so Python
// raises it instead of waiting. Everything is bounded by `timeoutMs`, after which the connection is
// closed and the promise rejects saying how many groups had arrived.
import * as Moq from "@moq/lite";

function hexToBytes(hex) {
  if (!/^([0-9a-fA-F]{2}){32}$/.test(hex)) throw new Error(`not a hex SHA-256: ${JSON.stringify(hex)}`);
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function toBase64(bytes) {
  let s = "";
  const step = 0x8000; // String.fromCharCode takes a bounded number of arguments
  for (let i = 0; i < bytes.length; i += step) s += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  return btoa(s);
}

function status(text) {
  const el = document.getElementById("status");
  if (el) el.textContent = text;
}

/**
 * @param {{url: string, certSha256: string[], broadcast: string, track: string, count: number,
 *          timeoutMs: number}} args
 * @returns {Promise<{version: string, groups: {sequence: number, frames: string[]}[]}>}
 *   groups in arrival order, each with all its frames (base64) in order.
 */
export async function readGroups({ url, certSha256, broadcast, track, count, timeoutMs }) {
  let step = "start";
  const groups = [];
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms at step "${step}" with ${groups.length}/${count} groups`)),
      timeoutMs,
    );
  });
  const bounded = (p) => Promise.race([p, expired]);
  let conn;
  try {
    step = "connect";
    status(step);
    const hashes = certSha256.map((h) => ({ algorithm: "sha-256", value: hexToBytes(h) }));
    try {
      conn = await bounded(
        Moq.Connection.connect(new URL(url), {
          webtransport: { serverCertificateHashes: hashes },
          // WebTransport only: a moq-rs Server has no TCP side, and a refused WebSocket fallback
          // makes connect() hang instead of failing.
          websocket: { enabled: false },
        }),
      );
    } catch (e) {
      // connect() races its transports with Promise.any: the real reason is inside the AggregateError
      const inner = e instanceof AggregateError ? e.errors.map((x) => String(x?.message ?? x)).join("; ") : "";
      throw new Error(`connect to ${url} failed: ${e?.message ?? e}${inner ? ` (${inner})` : ""}`);
    }
    const closed = conn.closed.then(
      () => { throw new Error("the session closed"); },
      (e) => { throw new Error(`the session failed: ${e?.message ?? e}`); },
    );
    closed.catch(() => {}); // observed through `live` below
    const live = (p) => bounded(Promise.race([p, closed]));

    step = "subscribe";
    status(step);
    const bc = conn.consume(Moq.Path.from(broadcast));
    const sub = bc.subscribe(track, 0);
    while (groups.length < count) {
      step = `wait for group ${groups.length + 1}/${count} of ${JSON.stringify(broadcast)}/${JSON.stringify(track)}`;
      status(step);
      const group = await live(sub.recvGroup());
      if (group === undefined) {
        throw new Error(`the track ended after ${groups.length}/${count} groups`);
      }
      step = `read group ${group.sequence}`;
      const frames = [];
      for (;;) {
        const frame = await live(group.readFrame());
        if (frame === undefined) break;
        frames.push(toBase64(frame));
      }
      groups.push({ sequence: group.sequence, frames });
    }
    sub.close();
    bc.close();
    status("done");
    return { version: conn.version, groups };
  } catch (e) {
    status(`failed: ${e?.message ?? e}`);
    throw new Error(`@moq/lite reader, step "${step}": ${e?.message ?? e}`);
  } finally {
    clearTimeout(timer);
    if (conn) conn.close();
  }
}
