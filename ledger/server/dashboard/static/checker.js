/* The receipt checker page (checker.html): reads a receipt or proof bundle and the public
 * keys from files, drops or pasted text, runs LedgerVerify (verify.js) in the browser and
 * shows its verdict: valid, or which check failed and why. It talks to no server. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const V = window.LedgerVerify;

  function looksLikeKeys(text) {
    const t = text.trim();
    if (t.includes("-----BEGIN") || (/^[^{[\s]+\+[0-9a-fA-F]{8}\+/).test(t)) return true;
    try {
      const obj = JSON.parse(t);
      return Boolean(obj && (Array.isArray(obj.keys) || (typeof obj.public_key === "string")));
    } catch { return false; }
  }

  let reading = Promise.resolve(); // files being read: a check waits for them

  function readInto(file, target) {
    reading = reading.then(async () => { $(target).value = await file.text(); });
  }

  function say(state, text, failed) {
    const box = $("verdict");
    box.dataset.state = state;
    box.dataset.failed = failed || "";
    box.className = `verdict ${state === "valid" ? "ok" : state === "idle" ? "" : "error"}`;
    box.textContent = text;
  }

  async function check() {
    $("checks").replaceChildren();
    say("checking", "Checking…");
    await reading;
    let doc; let keys;
    try {
      doc = JSON.parse($("doc-text").value);
    } catch (exc) {
      say("error", `The receipt or bundle is not JSON: ${exc.message}`, "input"); return;
    }
    try {
      keys = await V.parsePublicKeys($("keys-text").value);
    } catch (exc) {
      say("error", `The public keys cannot be read: ${exc.message}`, "input"); return;
    }
    let result;
    try { result = await V.verifyDocument(doc, keys); } catch (exc) {
      say("error", exc.message, "input"); return;
    }
    window.checkerResult = result;
    if (result.valid) {
      const what = result.kind === "bundle" ? "proof bundle" : "receipt";
      say("valid", `OK: the ${what} verifies (${result.receipt_id}, key ${result.key_id})`);
    } else {
      say("invalid", `INVALID (${result.failed}): ${result.message}`, result.failed);
    }
    $("checks").replaceChildren(...result.checks.map((c) => {
      const li = document.createElement("li"); li.textContent = `✓ ${c}`; return li;
    }));
  }

  $("doc-file").addEventListener("change", (e) => e.target.files[0] && readInto(e.target.files[0], "doc-text"));
  $("keys-file").addEventListener("change", (e) => e.target.files[0] && readInto(e.target.files[0], "keys-text"));
  $("check").addEventListener("click", check);
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault(); drop.classList.remove("over");
    for (const file of e.dataTransfer.files) {
      const text = await file.text();
      $(looksLikeKeys(text) ? "keys-text" : "doc-text").value = text;
    }
    if ($("doc-text").value && $("keys-text").value) check();
  });
  say("idle", "");
})();
