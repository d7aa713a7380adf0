// The share page: reads what the link points at, then downloads it.
//
// Normal bucket: the server decrypts; the page fetches /s/{token}/content.
// End-to-end bucket: the key is in the URL fragment (#k=...), which the browser never sends.
// The page fetches the sealed manifest and the chunks, and opens them here with WebCrypto
// (AES-256-GCM); formats in docs/formats.md.
"use strict";

const token = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const base = "/s/" + encodeURIComponent(token);
const el = (id) => document.getElementById(id);
const PREVIEW_LIMIT = 64 * 1024 * 1024;
let grant = null; // from unlock, when the link has a password
let saved = null; // object URL of the bytes, once fetched

function status(text, error) {
  el("status").textContent = text;
  el("status").className = error ? "error" : "";
}

function human(n) {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

async function failure(response) {
  try {
    const body = await response.json();
    return body.error.message + " (" + body.error.code + ")";
  } catch (_) {
    return "HTTP " + response.status;
  }
}

function b64url(text) {
  const s = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(s + "=".repeat((4 - s.length % 4) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function same(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function aesOpen(key, nonce, data, aad) {
  const k = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
  const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, k, data);
  return new Uint8Array(plain);
}

// Sealed manifest (nuSM v1) -> entries [{address, key, len}].
async function openManifest(sealed, fileKey) {
  const dv = new DataView(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const magic = String.fromCharCode(...sealed.subarray(0, 4));
  if (magic !== "nuSM" || sealed[4] !== 1) throw new Error("not a sealed manifest this page knows");
  const n = dv.getUint32(92, true);
  const aadEnd = 96 + 32 * n;
  const inner = await aesOpen(fileKey, sealed.subarray(aadEnd, aadEnd + 12), sealed.subarray(aadEnd + 12), sealed.subarray(0, aadEnd));
  const iv = new DataView(inner.buffer, inner.byteOffset, inner.byteLength);
  if (String.fromCharCode(...inner.subarray(0, 4)) !== "nuMF" || inner[4] !== 1) throw new Error("bad inner manifest");
  const count = iv.getUint32(48, true);
  if (count !== n || inner.length !== 52 + 68 * count) throw new Error("manifest lengths disagree");
  const entries = [];
  for (let i = 0; i < count; i++) {
    const at = 52 + 68 * i;
    const address = inner.slice(at, at + 32);
    if (!same(address, sealed.subarray(96 + 32 * i, 128 + 32 * i))) throw new Error("manifest addresses disagree");
    entries.push({ address, key: inner.slice(at + 32, at + 64), len: iv.getUint32(at + 64, true) });
  }
  return entries;
}

// Stored chunk (nuCH v1) -> plaintext.
async function openChunk(stored, entry) {
  if (String.fromCharCode(...stored.subarray(0, 4)) !== "nuCH" || stored[4] !== 1 || stored[5] !== 1) {
    throw new Error("unknown chunk format");
  }
  const header = stored.subarray(0, 20);
  let plain = await aesOpen(entry.key, stored.subarray(8, 20), stored.subarray(20), header);
  if (stored[6] === 1) {
    // zstd: end-to-end uploads store chunks uncompressed, but a browser that can inflate
    // zstd opens compressed ones too.
    const stream = new Blob([plain]).stream().pipeThrough(new DecompressionStream("zstd"));
    plain = new Uint8Array(await new Response(stream).arrayBuffer());
  } else if (stored[6] !== 0) {
    throw new Error("unknown chunk compression");
  }
  if (plain.length !== entry.len) throw new Error("chunk length differs from the manifest");
  return plain;
}

function headers() {
  return grant ? { "x-nuage-grant": grant } : {};
}

// Edges that failed during this download are not asked again.
const failedEdges = new Set();

// One chunk, opened: from the server's edges in the order it lists them, then from the
// server. An edge's bytes need no extra check: AES-GCM refuses anything but the chunk.
async function chunk(view, address, entry) {
  const grant = encodeURIComponent(view.grants[address]);
  for (const edge of view.edges || []) {
    if (failedEdges.has(edge.url)) continue;
    try {
      // An edge that accepts and never answers costs one wait, then is skipped.
      const c = await fetch(edge.url + "/chunks/" + address + "?grant=" + grant,
                            { signal: AbortSignal.timeout(20000) });
      if (c.ok) return await openChunk(new Uint8Array(await c.arrayBuffer()), entry);
      if (c.status >= 500) failedEdges.add(edge.url);
    } catch (e) {
      failedEdges.add(edge.url);
    }
  }
  const c = await fetch("/v1/chunks/" + address, { headers: { "x-nuage-grant": view.grants[address] } });
  if (!c.ok) throw new Error(await failure(c));
  return await openChunk(new Uint8Array(await c.arrayBuffer()), entry);
}

async function fetchE2E(info, fileKey) {
  const r = await fetch(base + "/manifest", { headers: headers(), cache: "no-store" });
  if (!r.ok) throw new Error(await failure(r));
  const view = await r.json();
  const entries = await openManifest(b64url(view.manifest), fileKey);
  const parts = new Array(entries.length);
  let done = 0, next = 0;
  async function worker() {
    while (next < entries.length) {
      const i = next++;
      const address = hex(entries[i].address);
      parts[i] = await chunk(view, address, entries[i]);
      done += parts[i].length;
      status("Decrypting… " + Math.floor(100 * done / Math.max(info.size, 1)) + "%");
    }
  }
  await Promise.all([worker(), worker(), worker(), worker()]);
  return new Blob(parts, { type: info.content_type || "application/octet-stream" });
}

async function fetchPlain(info) {
  const r = await fetch(base + "/content", { headers: headers(), cache: "no-store" });
  if (!r.ok) throw new Error(await failure(r));
  return new Blob([await r.arrayBuffer()], { type: info.content_type || "application/octet-stream" });
}

async function obtain(info, fileKey) {
  if (saved) return saved;
  status("Downloading…");
  const blob = info.e2e ? await fetchE2E(info, fileKey) : await fetchPlain(info);
  if (blob.size !== info.size) throw new Error("got " + blob.size + " bytes, expected " + info.size);
  saved = URL.createObjectURL(blob);
  return saved;
}

function isImage(info) {
  return /^image\/(png|jpeg|gif|webp|avif|bmp)$/.test(info.content_type || "");
}

async function ready(info, fileKey) {
  const save = el("save");
  save.download = info.name;
  save.hidden = false;
  if (isImage(info) && info.size <= PREVIEW_LIMIT) {
    // One download shows the image and saves it.
    const url = await obtain(info, fileKey);
    el("preview").src = url;
    el("preview").alt = info.name;
    el("preview").hidden = false;
    save.href = url;
    status("Ready.");
    return;
  }
  if (!info.e2e && !grant) {
    // A plain link: the browser streams it to disk, whatever its size.
    save.href = base + "/content";
    status("");
    return;
  }
  save.href = "#";
  status("");
  save.addEventListener("click", async function once(event) {
    if (save.href.startsWith("blob:")) return;
    event.preventDefault();
    try {
      save.href = await obtain(info, fileKey);
      status("Ready.");
      save.removeEventListener("click", once);
      save.click();
    } catch (e) {
      status(e.message, true);
    }
  });
}

async function main() {
  const r = await fetch(base + "/info", { cache: "no-store" });
  if (!r.ok) { status(await failure(r), true); return; }
  const info = await r.json();
  el("name").textContent = info.name;
  document.title = info.name + " · nuage";
  let meta = human(info.size);
  if (info.content_type) meta += " · " + info.content_type;
  if (info.downloads_left !== null && info.downloads_left !== undefined) meta += " · " + info.downloads_left + " download(s) left";
  el("meta").textContent = meta;
  let fileKey = null;
  if (info.e2e) {
    el("e2e-note").hidden = false;
    const k = new URLSearchParams(location.hash.slice(1)).get("k");
    if (!k) { status("This link lacks its key (the part after #k=): ask for the whole link.", true); return; }
    fileKey = b64url(k);
    if (fileKey.length !== 32) { status("The key in this link is damaged.", true); return; }
  }
  if (info.password) {
    status("This link asks for a password.");
    el("unlock").hidden = false;
    el("unlock").addEventListener("submit", async (event) => {
      event.preventDefault();
      const u = await fetch(base + "/unlock", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ password: el("password").value }),
      });
      if (!u.ok) { status(await failure(u), true); return; }
      grant = (await u.json()).grant;
      el("unlock").hidden = true;
      ready(info, fileKey).catch((e) => status(e.message, true));
    });
    return;
  }
  await ready(info, fileKey);
}

main().catch((e) => status(e.message, true));
