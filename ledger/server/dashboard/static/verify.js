/* Offline verification of receipts and proof bundles in the browser (docs/formats.md),
 * the same checks, in the same order and with the same verdicts, as
 * ledger/receipts/verification.py (`llmring receipts verify`):
 *
 *   format     the document is not a receipt / bundle of a known format;
 *   key        no given public key has the receipt's key id;
 *   signature  the Ed25519 signature over the RFC 8785 bytes does not verify;
 *   leaf       the event's canonical fields do not hash to the bundle's leaf hash;
 *   path       the audit path does not lead from the leaf to the receipt's merkle_root;
 *   log_proof  the signed log checkpoint or the event's inclusion in it does not verify.
 *
 * Everything runs here: WebCrypto's Ed25519 and SHA-256, RFC 8785 (JCS) canonical JSON,
 * RFC 9162 Merkle hashing, C2SP signed notes. No server is asked anything. A classic
 * script (not a module) so that checker.html also works opened as a local file; it
 * defines the one global `LedgerVerify`.
 */
"use strict";

(function (root) {
  const BUNDLE_FORMAT = "ledger-proof/v1";
  const SIGNED_FIELDS = ["receipt_id", "timestamp", "tenant", "certified_count",
    "merkle_root", "key_id"];
  const SIGNATURE_PREFIX = "ed25519:";
  const NOTE_SIGNATURE_PREFIX = "\u2014 ";
  const SPKI_PREFIX = hexToBytes("302a300506032b6570032100");
  const encoder = new TextEncoder();

  class CheckError extends Error {}

  // -- bytes ---------------------------------------------------------------------------
  function hexToBytes(hex) {
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
    return out;
  }

  function bytesToHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /** 32 bytes from 64 hex digits, else null (verification.py `_hex32`). */
  function hex32(value) {
    if (typeof value !== "string" || value.length !== 64 || !/^[0-9a-fA-F]*$/.test(value)) {
      return null;
    }
    return hexToBytes(value);
  }

  function b64encode(bytes) {
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
  }

  /** Standard base64 with padding; `canonical`: unused bits must be zero. */
  function b64decode(text, canonical = true) {
    if (typeof text !== "string" ||
        !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
      throw new CheckError("not standard base64 with padding");
    }
    const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    if (canonical && b64encode(bytes) !== text) {
      throw new CheckError("non-canonical base64 (unused bits are set)");
    }
    return bytes;
  }

  /** base64url without padding, strict and canonical (signing.py `b64url_decode`). */
  function b64urlDecode(text) {
    if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
      throw new CheckError("not base64url without padding");
    }
    const std = text.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = b64decode(std + "=".repeat((4 - (std.length % 4)) % 4), false);
    const again = b64encode(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    if (again !== text) throw new CheckError("non-canonical base64url (unused bits are set)");
    return bytes;
  }

  // -- RFC 8785 --------------------------------------------------------------------------
  /** The RFC 8785 (JCS) text of a JSON value: sorted keys (UTF-16 code units), ECMAScript
   * number and string spelling, no whitespace. */
  function canonicalJson(value) {
    if (value === null) return "null";
    switch (typeof value) {
      case "boolean": return value ? "true" : "false";
      case "string": return JSON.stringify(value);
      case "number":
        if (!Number.isFinite(value)) throw new CheckError("a number that is not finite");
        if (Number.isInteger(value) && !Number.isSafeInteger(value)) {
          throw new CheckError(`the integer ${value} is outside the exact range of JSON`);
        }
        return JSON.stringify(value);
      case "object":
        if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
        return "{" + Object.keys(value).sort().map(
          (k) => JSON.stringify(k) + ":" + canonicalJson(value[k])).join(",") + "}";
      default:
        throw new CheckError(`a value JSON cannot carry (${typeof value})`);
    }
  }

  // -- hashing and Ed25519 ---------------------------------------------------------------
  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  async function ed25519Verify(publicKey, message, signature) {
    if (publicKey.length !== 32 || signature.length !== 64) return false;
    try {
      const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false,
        ["verify"]);
      return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
    } catch (exc) {
      if (exc && exc.name === "NotSupportedError") {
        throw new Error("this browser's WebCrypto has no Ed25519: use a recent Chromium, " +
          "Firefox or Safari");
      }
      return false;
    }
  }

  /** 4-byte C2SP key id: SHA-256(name ‖ 0x0A ‖ type ‖ key)[:4], as 8 hex digits. */
  async function keyId(name, publicKey, type = 0x01) {
    const digest = await sha256(concat(encoder.encode(name), Uint8Array.of(0x0a, type),
      publicKey));
    return bytesToHex(digest.slice(0, 4));
  }

  async function leafHash(data) { return sha256(concat(Uint8Array.of(0), data)); }
  async function nodeHash(left, right) { return sha256(concat(Uint8Array.of(1), left, right)); }

  /** RFC 9162 §2.1.3.2 steps 1–5 but the comparison (merkle.py `root_from_inclusion_proof`). */
  async function rootFromInclusionProof(leaf, index, size, proof) {
    if (!Number.isInteger(index) || !Number.isInteger(size) || !(index >= 0 && index < size)) {
      throw new CheckError(`leaf index ${index} is not in a tree of size ${size}`);
    }
    if (leaf.length !== 32) throw new CheckError("the leaf hash is not 32 bytes");
    // sizes up to 2^53: BigInt keeps the bit operations exact
    let fn = BigInt(index); let sn = BigInt(size) - 1n;
    let r = leaf;
    for (let i = 0; i < proof.length; i++) {
      const p = proof[i];
      if (sn === 0n) throw new CheckError(`inclusion proof too long: element ${i} is beyond the root`);
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        if ((fn & 1n) === 0n) {
          while (fn !== 0n && (fn & 1n) === 0n) { fn >>= 1n; sn >>= 1n; }
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) {
      throw new CheckError(`inclusion proof too short: ${proof.length} elements end below the root`);
    }
    return r;
  }

  // -- public keys -----------------------------------------------------------------------
  function validKeyName(name) {
    return typeof name === "string" && name !== "" && !name.includes("+") &&
      !/[\s\u0000-\u001f\u007f]/u.test(name);
  }

  async function keyInfo(name, publicKey) {
    if (publicKey.length !== 32) {
      throw new CheckError(`an Ed25519 public key has 32 bytes, not ${publicKey.length}`);
    }
    return { name, publicKey, keyId: await keyId(name, publicKey) };
  }

  async function keyFromJson(obj) {
    if (!obj || typeof obj !== "object" || Array.isArray(obj)) {
      throw new CheckError("a public key entry must be a JSON object");
    }
    const algorithm = obj.algorithm === undefined ? "ed25519" : obj.algorithm;
    if (algorithm !== "ed25519") throw new CheckError(`unsupported key algorithm ${algorithm}`);
    const name = obj.name === undefined ? "" : obj.name;
    if (typeof name !== "string" || (name && !validKeyName(name))) {
      throw new CheckError(`invalid key name ${JSON.stringify(name)}`);
    }
    let publicKey;
    try { publicKey = b64urlDecode(obj.public_key); } catch (exc) {
      throw new CheckError(`public_key must be base64url without padding (${exc.message})`);
    }
    const info = await keyInfo(name, publicKey);
    if (obj.key_id !== undefined && obj.key_id !== null &&
        String(obj.key_id).toLowerCase() !== info.keyId) {
      throw new CheckError(`key_id ${obj.key_id} does not match the key (${info.keyId})`);
    }
    return info;
  }

  async function keyFromVkey(line) {
    const text = line.trim();
    const parts = text.split("+");
    if (parts.length < 3) throw new CheckError(`malformed verifier key ${text}: expected name+hexid+base64key`);
    const [name, hexId] = parts;
    const b64 = parts.slice(2).join("+");
    if (!validKeyName(name)) throw new CheckError(`verifier key: invalid key name ${name}`);
    if (!/^[0-9a-fA-F]{8}$/.test(hexId)) throw new CheckError(`verifier key: key id ${hexId} is not 8 hex digits`);
    const raw = b64decode(b64, false);
    if (raw.length === 0 || raw[0] !== 0x01) throw new CheckError("verifier key: unknown algorithm byte (only 0x01, Ed25519)");
    if (raw.length !== 33) throw new CheckError(`verifier key: an Ed25519 key has 32 bytes, this one ${raw.length - 1}`);
    if (b64encode(raw) !== b64) throw new CheckError("verifier key: non-canonical base64");
    const info = await keyInfo(name, raw.slice(1));
    if (info.keyId !== hexId.toLowerCase()) {
      throw new CheckError(`verifier key: key id ${hexId} does not match the key and name (expected ${info.keyId})`);
    }
    return info;
  }

  async function keysFromPem(text) {
    const out = [];
    const re = /-----BEGIN ([A-Z0-9 ]+)-----\s*([\s\S]*?)\s*-----END ([A-Z0-9 ]+)-----/g;
    for (const [, label, body, end] of text.matchAll(re)) {
      if (label !== end) throw new CheckError(`PEM block BEGIN ${label} ends with END ${end}`);
      if (label.includes("PRIVATE")) throw new CheckError("this PEM holds a private key: give the public key instead");
      if (label !== "PUBLIC KEY") throw new CheckError(`PEM block ${label} is not a PUBLIC KEY`);
      let der;
      try { der = b64decode(body.replace(/\s+/g, ""), false); } catch {
        throw new CheckError("PEM block: invalid base64");
      }
      if (der.length !== SPKI_PREFIX.length + 32 || !equal(der.slice(0, SPKI_PREFIX.length), SPKI_PREFIX)) {
        throw new CheckError("PEM block is not an Ed25519 public key");
      }
      out.push(await keyInfo("", der.slice(SPKI_PREFIX.length)));
    }
    if (!out.length) throw new CheckError("no PEM block found");
    return out;
  }

  /** The keys in a text: PEM public keys (nameless), the public-keys JSON, or verifier-key
   * lines (signing.py `load_public_keys`). */
  async function parsePublicKeys(text) {
    const stripped = (text || "").trim();
    if (!stripped) throw new CheckError("no public key given");
    if (stripped.includes("-----BEGIN")) return keysFromPem(stripped);
    if (stripped[0] === "{" || stripped[0] === "[") {
      let obj;
      try { obj = JSON.parse(stripped); } catch (exc) {
        throw new CheckError(`invalid JSON (${exc.message})`);
      }
      if (obj && typeof obj === "object" && !Array.isArray(obj) && "keys" in obj) obj = obj.keys;
      const entries = Array.isArray(obj) ? obj : [obj];
      if (!entries.length) throw new CheckError("the public-keys JSON lists no key");
      const out = [];
      for (let n = 0; n < entries.length; n++) {
        try { out.push(await keyFromJson(entries[n])); } catch (exc) {
          throw new CheckError(`key #${n + 1}: ${exc.message}`);
        }
      }
      return out;
    }
    if (stripped.includes("+")) {
      return Promise.all(stripped.split(/\r?\n/).filter((l) => l.trim()).map(keyFromVkey));
    }
    throw new CheckError("not a public key: expected a PEM public key, the public-keys JSON " +
      "(GET /api/v1/receipts/public-keys.json), or a verifier key line (name+hexid+base64)");
  }

  function keysFor(id, keys) {
    const wanted = String(id).toLowerCase();
    return [...keys.filter((k) => k.name && k.keyId === wanted), ...keys.filter((k) => !k.name)];
  }

  function decodeSignature(text) {
    if (typeof text !== "string") throw new CheckError("a signature must be a string");
    if (!text.startsWith(SIGNATURE_PREFIX)) {
      throw new CheckError("unsupported signature: expected 'ed25519:' followed by base64url without padding");
    }
    let sig;
    try { sig = b64urlDecode(text.slice(SIGNATURE_PREFIX.length)); } catch (exc) {
      throw new CheckError(`malformed ed25519 signature: ${exc.message}`);
    }
    if (sig.length !== 64) throw new CheckError(`malformed ed25519 signature: ${sig.length} bytes, expected 64`);
    return sig;
  }

  // -- signed notes and checkpoints ------------------------------------------------------
  /** A C2SP signed note: `{text, signatures: [{name, keyHash, signature, raw}]}`. Each
   * line's `raw` bytes follow the key id: 64 for a log signature, 8 + 64 for a witness
   * cosignature (its big-endian POSIX time first, see `cosignedAt`). */
  function parseNote(data) {
    if (typeof data !== "string") throw new CheckError("a note is text");
    for (let n = 0; n < data.length; n++) {
      const c = data.charCodeAt(n);
      if (c !== 10 && c < 0x20) throw new CheckError(`the note contains the control character U+${c.toString(16).padStart(4, "0").toUpperCase()} at offset ${n}`);
    }
    const split = data.lastIndexOf("\n\n");
    if (split < 0) throw new CheckError("the note has no blank line separating its text from the signature lines");
    const text = data.slice(0, split + 1); const sigs = data.slice(split + 2);
    if (!sigs) throw new CheckError("the note has no signature lines after its blank line");
    if (!sigs.endsWith("\n")) throw new CheckError("the note's last signature line does not end with a newline");
    const lines = sigs.slice(0, -1).split("\n");
    if (lines.length > 100) throw new CheckError("the note has more than 100 signature lines");
    const signatures = lines.map((line, i) => {
      if (!line.startsWith(NOTE_SIGNATURE_PREFIX)) throw new CheckError(`signature line ${i + 1} does not start with an em dash and a space`);
      const rest = line.slice(NOTE_SIGNATURE_PREFIX.length);
      const space = rest.indexOf(" ");
      const name = space < 0 ? rest : rest.slice(0, space); const b64 = space < 0 ? "" : rest.slice(space + 1);
      if (!b64) throw new CheckError(`signature line ${i + 1} has no signature after the key name`);
      if (!validKeyName(name)) throw new CheckError(`signature line ${i + 1}: invalid key name ${name}`);
      let raw;
      try { raw = b64decode(b64); } catch (exc) {
        throw new CheckError(`signature line ${i + 1} (${name}): the signature is ${exc.message}`);
      }
      if (raw.length < 5) throw new CheckError(`signature line ${i + 1} (${name}): too short for a key id and a signature`);
      return { name, keyHash: raw.slice(0, 4), signature: raw.slice(4) };
    });
    return { text, signatures };
  }

  /** The time (a Date) a cosignature line (C2SP tlog-cosignature) says it was made; null
   * for a line that is not one. */
  function cosignedAt(sig) {
    if (sig.signature.length !== 72) return null;
    const view = new DataView(sig.signature.buffer, sig.signature.byteOffset, 8);
    return new Date(Number(view.getBigUint64(0)) * 1000);
  }

  async function verifyNote(data, keys) {
    const note = parseNote(data);
    const message = encoder.encode(note.text);
    const verified = [];
    for (const sig of note.signatures) {
      const known = [];
      for (const k of keys) {
        const hash = k.name ? (sig.name === k.name ? k.keyId : null) : await keyId(sig.name, k.publicKey);
        if (hash !== null && hash === bytesToHex(sig.keyHash)) known.push(k);
      }
      if (!known.length) continue;
      let ok = false;
      if (sig.signature.length === 64) {
        for (const k of known) if (await ed25519Verify(k.publicKey, message, sig.signature)) ok = true;
      }
      if (!ok) {
        throw new CheckError(`the signature of ${sig.name} (key id ${bytesToHex(sig.keyHash)}) does not verify: the note was altered or signed by another key`);
      }
      verified.push(sig);
    }
    if (!verified.length) {
      const names = note.signatures.map((s) => `${s.name} (${bytesToHex(s.keyHash)})`).join(", ");
      throw new CheckError(`the note is signed by none of the given keys (it is signed by ${names})`);
    }
    return note;
  }

  function parseCheckpoint(body) {
    if (!body.endsWith("\n")) throw new CheckError("the checkpoint does not end with a newline");
    const lines = body.slice(0, -1).split("\n");
    if (lines.length < 3) throw new CheckError(`the checkpoint has ${lines.length} lines; it needs an origin, a tree size and a root hash`);
    const [origin, sizeText, rootText, ...extensions] = lines;
    if (!origin) throw new CheckError("the checkpoint's origin line is empty");
    if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new CheckError(`the tree size ${sizeText} is not a decimal number without leading zeros`);
    if (BigInt(sizeText) > 2n ** 64n - 1n) throw new CheckError(`the tree size ${sizeText} does not fit in 64 bits`);
    let root;
    try { root = b64decode(rootText); } catch (exc) {
      throw new CheckError(`the root hash ${rootText} is ${exc.message}`);
    }
    if (root.length !== 32) throw new CheckError(`the root hash has ${root.length} bytes, expected 32`);
    if (extensions.some((e) => !e)) throw new CheckError("a line of the checkpoint is empty");
    return { origin, size: Number(sizeText), root };
  }

  async function verifyCheckpoint(note, keys, origin) {
    const cp = parseCheckpoint((await verifyNote(note, keys)).text);
    if (origin !== undefined && cp.origin !== origin) {
      throw new CheckError(`the checkpoint is for origin ${JSON.stringify(cp.origin)}, not ${JSON.stringify(origin)}`);
    }
    return cp;
  }

  // -- receipts and bundles --------------------------------------------------------------
  function newResult(kind) {
    return { valid: false, kind, receipt_id: null, key_id: null, algorithm: "ed25519",
      failed: null, message: "", checks: [] };
  }

  function fail(result, check, message) {
    result.valid = false; result.failed = check; result.message = message;
    return result;
  }

  function isObject(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }

  async function verifyReceipt(receipt, keys, result = newResult("receipt")) {
    if (!isObject(receipt)) return fail(result, "format", "a receipt must be a JSON object");
    result.receipt_id = typeof receipt.receipt_id === "string" ? receipt.receipt_id : null;
    const missing = [...SIGNED_FIELDS, "signature"].filter((f) => !(f in receipt));
    if (missing.length) return fail(result, "format", `not a signed receipt: missing ${missing.join(", ")}`);
    const id = receipt.key_id;
    result.key_id = typeof id === "string" ? id : null;
    let signature;
    try { signature = decodeSignature(receipt.signature); } catch (exc) {
      return fail(result, "signature", exc.message);
    }
    const candidates = typeof id === "string" ? keysFor(id, keys) : [];
    if (!candidates.length) {
      const known = [...new Set(keys.map((k) => k.keyId))].sort().join(", ") || "none";
      return fail(result, "key", `key unknown: the receipt was signed by key id ${id}, which is not among the given public keys (${known}); get the ledger's public keys (current and retired)`);
    }
    let message;
    try {
      const unsigned = Object.fromEntries(Object.entries(receipt).filter(([k]) => k !== "signature"));
      message = encoder.encode(canonicalJson(unsigned));
    } catch (exc) {
      return fail(result, "format", `the receipt cannot be canonicalized: ${exc.message}`);
    }
    let ok = false;
    for (const k of candidates) if (await ed25519Verify(k.publicKey, message, signature)) ok = true;
    if (!ok) {
      return fail(result, "signature", `the signature does not verify with key ${id}: a signed field of the receipt was changed, or another key signed it`);
    }
    result.checks.push(`signature by key ${id}`);
    result.valid = true; result.failed = null; result.message = "the receipt is authentic";
    return result;
  }

  async function checkLogProof(proof, receipt, leaf, keys) {
    if (!isObject(proof)) return "log_proof must be a JSON object";
    const claim = receipt.log_checkpoint;
    if (!isObject(claim)) return "the receipt has no log_checkpoint";
    let cp;
    try {
      cp = await verifyCheckpoint(proof.checkpoint === undefined ? "" : proof.checkpoint, keys, claim.origin);
    } catch (exc) {
      if (!(exc instanceof CheckError)) throw exc;
      return `the log checkpoint does not verify: ${exc.message}`;
    }
    if (cp.size !== claim.size || bytesToHex(cp.root) !== claim.root) {
      return "the signed checkpoint is not the receipt's log_checkpoint";
    }
    const path = Array.isArray(proof.audit_path) ? proof.audit_path.map(hex32) : [null];
    if (path.some((h) => h === null)) return "the log audit_path must be a list of 64-hex-digit hashes";
    let reached;
    try {
      reached = await rootFromInclusionProof(leaf, proof.leaf_index === undefined ? -1 : proof.leaf_index, cp.size, path);
    } catch (exc) {
      if (!(exc instanceof CheckError)) throw exc;
      return `the log inclusion proof is malformed: ${exc.message}`;
    }
    if (!equal(reached, cp.root)) return "the event's log inclusion proof does not reach the checkpoint's root";
    return null;
  }

  async function verifyBundle(bundle, keys) {
    const result = newResult("bundle");
    if (!isObject(bundle) || bundle.format !== BUNDLE_FORMAT) {
      return fail(result, "format", `not a proof bundle: "format" must be "${BUNDLE_FORMAT}"`);
    }
    const missing = ["receipt", "event", "leaf_index", "tree_size", "audit_path"].filter((f) => !(f in bundle));
    if (missing.length) return fail(result, "format", `the bundle lacks ${missing.join(", ")}`);
    await verifyReceipt(bundle.receipt, keys, result);
    if (!result.valid) return result;
    const receipt = bundle.receipt; const event = bundle.event;
    result.valid = false;
    if (!isObject(event)) return fail(result, "format", "the bundle's event must be a JSON object");
    if (event.tenant !== receipt.tenant) {
      return fail(result, "leaf", `the event belongs to project ${JSON.stringify(event.tenant)}, the receipt to ${JSON.stringify(receipt.tenant)}`);
    }
    let leaf;
    try { leaf = await leafHash(encoder.encode(canonicalJson(event))); } catch (exc) {
      return fail(result, "format", `the event cannot be canonicalized: ${exc.message}`);
    }
    if ("leaf_hash" in bundle) {
      const given = hex32(bundle.leaf_hash);
      if (given === null) return fail(result, "format", "leaf_hash must be 64 hex digits");
      if (!equal(given, leaf)) {
        return fail(result, "leaf", `the event does not match the leaf: its canonical fields hash to ${bytesToHex(leaf)}, not the bundle's leaf_hash (the event was edited)`);
      }
    }
    result.checks.push(`leaf hash ${bytesToHex(leaf)}`);
    const index = bundle.leaf_index; const size = bundle.tree_size;
    if (!Number.isInteger(index) || !Number.isInteger(size)) {
      return fail(result, "format", "leaf_index and tree_size must be integers");
    }
    if (size !== receipt.certified_count) {
      return fail(result, "path", `tree_size ${size} is not the receipt's certified_count ${receipt.certified_count}`);
    }
    const path = Array.isArray(bundle.audit_path) ? bundle.audit_path.map(hex32) : [null];
    if (path.some((h) => h === null)) return fail(result, "format", "audit_path must be a list of 64-hex-digit hashes");
    const merkleRoot = hex32(receipt.merkle_root);
    if (merkleRoot === null) return fail(result, "format", "the receipt's merkle_root must be 64 hex digits");
    let reached;
    try { reached = await rootFromInclusionProof(leaf, index, size, path); } catch (exc) {
      if (!(exc instanceof CheckError)) throw exc;
      return fail(result, "path", `the audit path is malformed: ${exc.message}`);
    }
    if (!equal(reached, merkleRoot)) {
      const what = "leaf_hash" in bundle ? "the audit path was altered or belongs to another receipt"
        : "the event does not match the leaf the path was made for (the event was edited), or the path was altered";
      return fail(result, "path", `the path does not reach the receipt's merkle_root (${bytesToHex(merkleRoot)}): it reaches ${bytesToHex(reached)}; ${what}`);
    }
    result.checks.push(`leaf ${index} of ${size} reaches merkle_root ${bytesToHex(merkleRoot)}`);
    if ("log_proof" in bundle) {
      const problem = await checkLogProof(bundle.log_proof, receipt, leaf, keys);
      if (problem) return fail(result, "log_proof", problem);
      result.checks.push(`event included in the signed log checkpoint ${receipt.log_checkpoint.origin} @ ${receipt.log_checkpoint.size}`);
    }
    result.valid = true; result.message = "the event is certified by the authentic receipt";
    return result;
  }

  /** Verify a document as `llmring receipts verify FILE` does: a proof bundle, a receipt,
   * or the output of `receipts generate --json` (`{receipt, certified_count}`). */
  async function verifyDocument(doc, keys) {
    if (isObject(doc) && doc.format === BUNDLE_FORMAT) return verifyBundle(doc, keys);
    if (isObject(doc) && isObject(doc.receipt) && "certified_count" in doc && !("receipt_id" in doc)) {
      doc = doc.receipt;
    }
    return verifyReceipt(doc, keys);
  }

  root.LedgerVerify = {
    BUNDLE_FORMAT, CheckError, bytesToHex, canonicalJson, cosignedAt, parseCheckpoint,
    parseNote, parsePublicKeys, verifyBundle, verifyCheckpoint, verifyDocument,
    verifyReceipt,
  };
})(typeof window !== "undefined" ? window : globalThis);
