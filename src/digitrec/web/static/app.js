// digitrec page: drawing pad (pointer events), upload / drop / paste, live prediction, the
// states of the answer (idle, drawing, reading, answered, abstained, error), this visit's
// readings. No build step, no dependencies. The pad is exported as a PNG of black ink on white.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const overlay = $("overlay");
  const octx = overlay.getContext("2d");
  const result = $("result");
  const SIZES = { digit: [280, 280], number: [560, 280] };
  const LIVE_MS = 150; // live prediction at most this often while drawing
  const HISTORY_MAX = 24; // readings kept in the strip (this page only, never stored or sent)

  let strokes = []; // finished strokes: {width, points: [[x, y], ...]}
  let current = null; // the stroke being drawn
  let pointerId = null;
  let version = 0; // bumped on every change of the input; results say which one they answer
  let timer = null;
  let busy = false;
  let pending = false;
  let preparing = false; // an upload being scaled down before it is sent
  let controller = null;
  let upload = null; // {form, version}: the uploaded image now on the pad, to send again
  let outcome = "idle"; // what is on screen: idle | answered | abstained | error
  let errorKind = ""; // input (this image cannot be read) | server (out of reach, or failing)
  let shown = { version: -1, error: false }; // which input the screen answers

  const numberMode = () => $("mode-number").checked;
  const endpoint = () => (numberMode() ? "/api/read-number" : "/api/predict");
  const isEmpty = () => strokes.length === 0 && current === null;
  const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
  const sure = (p) => `${Math.round(100 * p)}% sure`;

  // ---- the page's state: one attribute, data-state on #result ---------------------------

  function refreshState() {
    let state = outcome;
    if (current) state = "drawing";
    else if (busy || pending || preparing) state = "reading";
    result.dataset.state = state;
    result.dataset.outcome = outcome;
    result.dataset.error = outcome === "error" ? errorKind : "";
    result.setAttribute("aria-busy", String(busy || preparing));
    if (state === "reading" && outcome !== "answered" && outcome !== "abstained") {
      $("status").textContent = "Reading…";
    }
    const n = strokes.length + (current ? 1 : 0);
    pad.setAttribute("aria-label", n ? `Drawing pad, ${n} stroke${n > 1 ? "s" : ""}`
      : "Drawing pad, empty");
  }

  function announce(text) {
    $("announce").textContent = text;
  }

  // ---- drawing --------------------------------------------------------------------------

  function drawStroke(c, stroke) {
    const p = stroke.points;
    c.strokeStyle = "#000";
    c.fillStyle = "#000";
    c.lineWidth = stroke.width;
    c.lineCap = "round";
    c.lineJoin = "round";
    c.beginPath();
    if (p.length === 1) {
      c.arc(p[0][0], p[0][1], stroke.width / 2, 0, 2 * Math.PI);
      c.fill();
      return;
    }
    // Quadratic curves through the midpoints: smooth, and it passes near every sample.
    c.moveTo(p[0][0], p[0][1]);
    for (let i = 1; i < p.length - 1; i++) {
      const mx = (p[i][0] + p[i + 1][0]) / 2;
      const my = (p[i][1] + p[i + 1][1]) / 2;
      c.quadraticCurveTo(p[i][0], p[i][1], mx, my);
    }
    const last = p[p.length - 1];
    c.lineTo(last[0], last[1]);
    c.stroke();
  }

  function render() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    for (const s of strokes) drawStroke(ctx, s);
    if (current) drawStroke(ctx, current);
  }

  function toPad(ev) {
    const r = pad.getBoundingClientRect();
    return [((ev.clientX - r.left) * pad.width) / r.width,
            ((ev.clientY - r.top) * pad.height) / r.height];
  }

  function addPoint(point) {
    const pts = current.points;
    const prev = pts[pts.length - 1];
    const dx = point[0] - prev[0];
    const dy = point[1] - prev[1];
    if (dx * dx + dy * dy < 1) return; // ignore sub-pixel jitter
    // Fill long gaps (fast moves, sparse samples) so the curve has points to follow.
    const steps = Math.floor(Math.hypot(dx, dy) / (current.width / 2));
    for (let i = 1; i < steps; i++) {
      pts.push([prev[0] + (dx * i) / steps, prev[1] + (dy * i) / steps]);
    }
    pts.push(point);
  }

  function changed() {
    version += 1;
    autoRetries = 0;
    pad.dataset.version = String(version);
    octx.clearRect(0, 0, overlay.width, overlay.height);
  }

  pad.addEventListener("pointerdown", (ev) => {
    if (ev.pointerType === "mouse" && ev.button !== 0) return;
    if (current) return; // one stroke at a time (ignore a second finger)
    ev.preventDefault();
    pad.setPointerCapture(ev.pointerId);
    pointerId = ev.pointerId;
    if (upload) startOver(); // drawing over an uploaded image: a new input
    hidePreview();
    current = { width: Number($("pen-width").value), points: [toPad(ev)] };
    changed();
    render();
    refreshState();
  });

  pad.addEventListener("pointermove", (ev) => {
    if (!current || ev.pointerId !== pointerId) return;
    ev.preventDefault();
    const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
    for (const e of events.length ? events : [ev]) addPoint(toPad(e));
    changed();
    render();
    if (!timer) timer = setTimeout(predict, LIVE_MS);
  });

  function endStroke(ev) {
    if (!current || ev.pointerId !== pointerId) return;
    strokes.push(current);
    current = null;
    pointerId = null;
    changed();
    render();
    predict(true);
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  function undo() {
    if (current || strokes.length === 0) return;
    strokes.pop();
    changed();
    render();
    if (isEmpty()) {
      dropHistoryEntry();
      resetResult();
    } else {
      predict();
    }
  }

  function clear() {
    strokes = [];
    current = null;
    changed();
    render();
    hidePreview();
    startOver();
    resetResult();
  }

  function setMode() {
    const [w, h] = SIZES[numberMode() ? "number" : "digit"];
    pad.width = overlay.width = w;
    pad.height = overlay.height = h;
    $("drop").classList.toggle("wide", numberMode());
    $("single").hidden = numberMode();
    $("single-details").hidden = numberMode();
    $("number").hidden = !numberMode();
    $("number-details").hidden = !numberMode();
    clear();
  }

  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clear);
  $("mode-number").addEventListener("change", setMode);
  $("mode-number").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { // Space toggles a checkbox; Enter does too here
      ev.preventDefault();
      ev.target.click();
    }
  });
  document.addEventListener("keydown", (ev) => {
    const typing = ev.target instanceof HTMLInputElement && ev.target.type !== "checkbox"
      && ev.target.type !== "range";
    if (typing) return;
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z") {
      ev.preventDefault();
      undo();
    } else if (ev.key === "Escape") {
      clear();
    }
  });

  // ---- upload, drop, paste --------------------------------------------------------------

  function hidePreview() {
    const img = $("upload-preview");
    if (img.src) URL.revokeObjectURL(img.src);
    img.removeAttribute("src");
    img.hidden = true;
    upload = null;
  }

  // Photos over the server's upload limit are scaled down here first (the models only need
  // a few hundred pixels); white underneath keeps transparent PNGs readable. Returns null for
  // a file over the limit that this browser cannot open as an image.
  async function shrink(file) {
    const limit = Number(document.body.dataset.maxUpload || 0);
    if (!limit || file.size <= limit) return file;
    if (!window.createImageBitmap) return file;
    try {
      const bitmap = await createImageBitmap(file);
      const scale = Math.min(1, 1600 / Math.max(bitmap.width, bitmap.height));
      const canvas = document.createElement("canvas");
      canvas.width = Math.round(bitmap.width * scale);
      canvas.height = Math.round(bitmap.height * scale);
      const c = canvas.getContext("2d");
      c.fillStyle = "#fff";
      c.fillRect(0, 0, canvas.width, canvas.height);
      c.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.9));
      return blob || file;
    } catch {
      return null;
    }
  }

  async function sendFile(file) {
    if (!file) return;
    strokes = [];
    current = null;
    changed();
    render();
    hidePreview();
    startOver();
    const forVersion = version;
    const img = $("upload-preview");
    img.onload = () => { img.hidden = false; };
    img.onerror = () => { img.hidden = true; }; // not an image: no broken-image icon
    img.src = URL.createObjectURL(file);
    preparing = true;
    refreshState();
    const small = await shrink(file);
    preparing = false;
    if (forVersion !== version) return;
    if (small === null) {
      const mb = (n) => `${(n / 1024 / 1024).toFixed(1)} MB`;
      showError("input", MESSAGES.notImage, `${file.name || "the file"} (${file.type
        || "type unknown"}, ${mb(file.size)}) is over the ${mb(Number(
        document.body.dataset.maxUpload))} upload limit and cannot be opened as an image`);
      result.dataset.for = String(forVersion);
      refreshState();
      return;
    }
    const form = new FormData();
    form.append("image", small, file.name || "upload");
    upload = { form, version: forVersion };
    request(form, forVersion, false);
  }

  $("upload").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", (ev) => {
    sendFile(ev.target.files[0]);
    ev.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    drop.classList.add("dragging");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("dragging");
    sendFile(ev.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (ev) => {
    const item = [...(ev.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (!item) return;
    ev.preventDefault();
    sendFile(item.getAsFile());
  });

  // ---- talking to the API ---------------------------------------------------------------

  // While drawing, one request at a time: the latest drawing is sent when it returns. When
  // the pen is lifted (`now`), a request still out for an older drawing is dropped instead.
  function predict(now = false) {
    clearTimeout(timer);
    timer = null;
    if (isEmpty()) return;
    if (busy && !now) {
      pending = true;
      refreshState();
      return;
    }
    pending = false;
    request(JSON.stringify({ image: pad.toDataURL("image/png") }), version, true);
  }

  async function request(body, forVersion, drawn) {
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    busy = true;
    refreshState();
    const headers = typeof body === "string" ? { "Content-Type": "application/json" } : {};
    try {
      const res = await fetch(endpoint(), { method: "POST", body, headers, signal: mine.signal });
      const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
      if (forVersion < shown.version || (forVersion === shown.version && !shown.error)) {
        return; // an older answer arrived late
      }
      const final = forVersion === version && !current;
      if (res.ok) {
        show(data, drawn, final);
        offerFix(body, data);
      } else {
        const [kind, text] = describeError(res.status, data.error || "", drawn);
        showError(kind, text, `HTTP ${res.status}: ${data.error || res.statusText}`);
      }
      shown = { version: forVersion, error: !res.ok };
      result.dataset.for = String(forVersion);
    } catch (err) {
      if (err.name !== "AbortError" && forVersion >= shown.version) {
        showError("server", MESSAGES.unreachable, `${err.name}: ${err.message}`);
        shown = { version: forVersion, error: true };
        result.dataset.for = String(forVersion);
      }
    } finally {
      if (controller === mine) {
        controller = null;
        busy = false;
        if (pending) {
          pending = false;
          predict();
        }
      }
      refreshState();
    }
  }

  // ---- errors, in people's words (the server's own words under "Technical detail") ------

  const MESSAGES = {
    notImage: "That file is not an image. Try a PNG or JPEG photo.",
    unreadable: "That image could not be read. Try another photo, as PNG or JPEG.",
    tooBig: "That file is too big to send. Try a smaller photo (under 4 MB).",
    tooManyPixels: "That image is too large to read. Try a smaller photo, or crop it to the digit.",
    noDigitDrawn: "No digit found: the marks are too small or too faint. Draw it bigger.",
    noDigit: "No digit found in that image. Try a photo where the digit is large and dark.",
    notNumber: "That does not look like a number. Write a few digits side by side, left to right.",
    unreachable: "The server cannot be reached. Your input is kept; the page tries again by "
      + "itself.",
    serverFailed: "The server could not read it just now. The page tries again by itself.",
    serverGaveUp: "The server could not read it. Press “Try again”, or try another image.",
    other: "It could not be read. Try again, or try another image.",
  };

  function describeError(status, message, drawn) {
    const m = message.toLowerCase();
    if (status >= 500 || status === 429 || status === 408) return ["server", MESSAGES.serverFailed];
    if (status === 415) return ["input", MESSAGES.notImage];
    if (status === 413) {
      return ["input", m.includes("pixel") ? MESSAGES.tooManyPixels : MESSAGES.tooBig];
    }
    if (status === 422) {
      if (m.includes("no digit")) return ["input", drawn ? MESSAGES.noDigitDrawn : MESSAGES.noDigit];
      return ["input", MESSAGES.notNumber];
    }
    if (status === 400) {
      const notImage = /not a readable image|not an image|none of the formats|content type/;
      return ["input", notImage.test(m) ? MESSAGES.notImage : MESSAGES.unreadable];
    }
    return ["input", MESSAGES.other];
  }

  function showError(kind, text, detail) {
    clearAnswer(); // the previous answer is not this input's: it goes
    outcome = "error";
    errorKind = kind;
    $("error-text").textContent = text;
    $("error-detail").textContent = detail;
    $("error").hidden = false;
    $("retry").hidden = kind !== "server";
    $("status").textContent = kind === "server" ? "Not read: the server is out of reach."
      : "Not read.";
    announce(text);
    if (kind === "server") scheduleRecovery(); else stopRecovery();
  }

  // When the server is gone, ask /healthz now and then; when it answers, read the input again.
  // A server that answers /healthz but fails on this input gets AUTO_RETRIES more tries.
  const AUTO_RETRIES = 2;
  let recoveryTimer = null;
  let recoveryDelay = 1000;
  let autoRetries = 0;

  function scheduleRecovery() {
    clearTimeout(recoveryTimer);
    recoveryTimer = setTimeout(checkServer, recoveryDelay);
    recoveryDelay = Math.min(2 * recoveryDelay, 8000);
  }

  function stopRecovery() {
    clearTimeout(recoveryTimer);
    recoveryTimer = null;
    recoveryDelay = 1000;
  }

  async function checkServer() {
    recoveryTimer = null;
    if (outcome !== "error" || errorKind !== "server") return;
    try {
      const res = await fetch("/healthz", { cache: "no-store" });
      if (res.ok) {
        if (autoRetries < AUTO_RETRIES) {
          autoRetries += 1;
          retry();
        } else {
          $("error-text").textContent = MESSAGES.serverGaveUp;
          announce(MESSAGES.serverGaveUp);
        }
        return;
      }
    } catch {
      // still gone
    }
    if (outcome === "error" && errorKind === "server" && !recoveryTimer) scheduleRecovery();
  }

  function retry() {
    stopRecovery();
    if (upload && upload.version === version) request(upload.form, version, false);
    else if (!isEmpty()) predict();
  }

  $("retry").addEventListener("click", retry);
  window.addEventListener("online", () => {
    if (outcome === "error" && errorKind === "server") retry();
  });

  // ---- showing results ------------------------------------------------------------------

  function clearAnswer() {
    for (const id of ["result-digit", "confidence", "result-number", "number-confidence", "ms"]) {
      $(id).textContent = "";
    }
    $("result-digit").classList.remove("unsure");
    $("result-number").classList.remove("unsure");
    $("unsure").hidden = true;
    $("number-unsure").hidden = true;
    $("error").hidden = true;
    $("models").replaceChildren();
    $("number-digits").replaceChildren();
    drawBars(null);
    $("bars").classList.remove("bars-unsure");
    $("seen").getContext("2d").clearRect(0, 0, 28, 28);
    octx.clearRect(0, 0, overlay.width, overlay.height);
    hideFix();
  }

  function resetResult() {
    clearTimeout(timer);
    timer = null;
    pending = false;
    if (controller) controller.abort();
    stopRecovery();
    clearAnswer();
    outcome = "idle";
    errorKind = "";
    $("status").textContent = numberMode()
      ? "Write a few digits side by side." : "Draw a digit to start.";
    shown = { version, error: false };
    result.dataset.for = String(version);
    refreshState();
  }

  function drawImage28(canvas, rows) {
    const c = canvas.getContext("2d");
    const img = c.createImageData(28, 28);
    rows.flat().forEach((v, i) => {
      img.data.set([v, v, v, 255], i * 4);
    });
    c.putImageData(img, 0, 0);
  }

  function drawBars(probs) {
    const body = $("bars").tBodies[0];
    if (body.rows.length !== 10) {
      body.replaceChildren(...Array.from({ length: 10 }, (_, d) => {
        const tr = document.createElement("tr");
        tr.innerHTML = `<th scope="row" class="bar-label">${d}</th>`
          + '<td><span class="bar-track" aria-hidden="true"><span class="bar-fill"></span>'
          + '</span></td><td class="bar-value"></td>';
        return tr;
      }));
    }
    const top = probs ? probs.indexOf(Math.max(...probs)) : -1;
    [...body.rows].forEach((tr, d) => {
      const p = probs ? probs[d] : 0;
      tr.classList.toggle("best", d === top);
      tr.querySelector(".bar-fill").style.width = `${(100 * p).toFixed(1)}%`;
      tr.querySelector(".bar-value").textContent = probs ? pct(p) : "–";
    });
  }

  function show(data, drawn, final) {
    $("error").hidden = true;
    stopRecovery();
    $("ms").textContent = `${data.ms} ms on the server`;
    const what = "number" in data ? showNumber(data, drawn) : showDigit(data);
    outcome = data.abstained ? "abstained" : "answered";
    errorKind = "";
    if (final) {
      announce(what);
      recordHistory(data, drawn);
    }
  }

  function showDigit(p) {
    const digit = $("result-digit");
    digit.textContent = String(p.best_guess);
    digit.classList.toggle("unsure", p.abstained);
    $("confidence").textContent = pct(p.confidence);
    $("unsure").hidden = !p.abstained;
    $("unsure-reason").textContent = p.reason ? `: ${p.reason}` : "";
    $("status").textContent = p.abstained
      ? `Probably ${p.best_guess}, but not sure.` : `It reads ${p.digit}.`;
    drawBars(p.probabilities);
    $("bars").classList.toggle("bars-unsure", p.abstained);
    drawImage28($("seen"), p.image28);
    $("models").replaceChildren(...Object.entries(p.models).map(([name, probs]) => {
      const vote = probs.indexOf(Math.max(...probs));
      const li = document.createElement("li");
      li.classList.toggle("dissent", vote !== p.best_guess);
      li.innerHTML = `<span class="model-name"></span> votes <strong>${vote}</strong>`
        + ` <span class="model-p">(${pct(probs[vote])})</span>`;
      li.querySelector(".model-name").textContent = name;
      return li;
    }));
    return p.abstained ? `Not sure: probably ${p.best_guess}, ${sure(p.confidence)}`
      : `Read ${p.digit}, ${sure(p.confidence)}`;
  }

  function showNumber(r, drawn) {
    const number = $("result-number");
    number.textContent = r.best_guess;
    number.classList.toggle("unsure", r.abstained);
    $("number-confidence").textContent = pct(r.confidence);
    $("number-unsure").hidden = !r.abstained;
    const disagree = (r.reason || "").startsWith("the readers disagree");
    $("status").textContent = !r.abstained ? `It reads ${r.number}.`
      : disagree ? `Probably ${r.best_guess}, but the two readers disagree.`
        : `Probably ${r.best_guess}, but not sure of every digit.`;
    $("number-digits").replaceChildren(...r.digits.map((d) => {
      const li = document.createElement("li");
      li.classList.toggle("unsure", d.abstained);
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = 28;
      canvas.setAttribute("aria-hidden", "true");
      drawImage28(canvas, d.image28);
      const label = document.createElement("span");
      label.textContent = `${d.best_guess} · ${pct(d.confidence)}`
        + (d.abstained ? " · not sure" : "");
      li.append(canvas, label);
      return li;
    }));
    if (drawn) drawBoxes(r.digits);
    return r.abstained ? `Not sure: probably ${r.best_guess}, ${sure(r.confidence)}`
      : `Read ${r.number}, ${sure(r.confidence)}`;
  }

  function drawBoxes(digits) {
    const css = getComputedStyle(document.documentElement);
    octx.clearRect(0, 0, overlay.width, overlay.height);
    octx.lineWidth = 2;
    octx.font = "bold 18px system-ui, sans-serif";
    for (const d of digits) {
      const [x0, y0, x1, y1] = d.box; // input pixels, right/bottom exclusive
      octx.strokeStyle = octx.fillStyle = css.getPropertyValue(
        d.abstained ? "--box-unsure" : "--box").trim();
      octx.strokeRect(x0 - 3, y0 - 3, x1 - x0 + 6, y1 - y0 + 6);
      octx.fillText(String(d.best_guess), x0, Math.max(18, y0 - 7));
    }
  }

  // ---- this visit's readings: a thumbnail and the answer, in this page only ---------------

  let entry = null; // the history item of the input now on the pad (updated as it changes)

  function startOver() {
    entry = null;
  }

  function dropHistoryEntry() {
    if (entry) entry.remove();
    entry = null;
    $("history-empty").hidden = $("history").children.length > 0;
  }

  function thumbnail(source, width, height) {
    const side = 56;
    const scale = Math.min(side / width, side / height);
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(width * scale));
    canvas.height = Math.max(1, Math.round(height * scale));
    const c = canvas.getContext("2d");
    c.fillStyle = "#fff";
    c.fillRect(0, 0, canvas.width, canvas.height);
    c.drawImage(source, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL("image/png");
  }

  function recordHistory(data, drawn) {
    const img = $("upload-preview");
    let src = null;
    if (drawn) src = thumbnail(pad, pad.width, pad.height);
    else if (img.complete && img.naturalWidth) {
      src = thumbnail(img, img.naturalWidth, img.naturalHeight);
    }
    const list = $("history");
    if (!entry) {
      entry = document.createElement("li");
      entry.innerHTML = '<img alt=""><span class="history-answer"></span>';
      list.prepend(entry);
      while (list.children.length > HISTORY_MAX) list.lastElementChild.remove();
    }
    const thumb = entry.querySelector("img");
    if (src) thumb.src = src; else thumb.removeAttribute("src");
    thumb.hidden = !src;
    const answer = "number" in data ? data.best_guess : String(data.best_guess);
    entry.classList.toggle("unsure", data.abstained);
    entry.querySelector(".history-answer").textContent = `${answer}${data.abstained ? "?" : ""}`
      + ` · ${pct(data.confidence)}`;
    entry.setAttribute("aria-label", `${drawn ? "Drawing" : "Photo"} read as ${answer}, `
      + `${sure(data.confidence)}${data.abstained ? ", not sure" : ""}`);
    $("history-empty").hidden = true;
  }

  // ---- corrections: "Wrong? It was …" -----------------------------------------------------

  const UNDO_MS = 8000; // the Undo button stays this long after a correction is saved
  let shownInput = null; // {body, mode, predicted}: what the answer on screen was read from
  let undoTimer = null;

  function offerFix(body, data) {
    const mode = "number" in data ? "number" : "digit";
    shownInput = { body, mode, predicted: String(data.best_guess) };
    $("fix-digits").hidden = mode !== "digit";
    $("fix-number").hidden = mode !== "number";
    $("fix-text").value = "";
    $("fix-status").textContent = "";
    $("fix-undo").hidden = true;
    $("fix").hidden = false;
  }

  function hideFix() {
    shownInput = null;
    clearTimeout(undoTimer);
    $("fix").hidden = true;
  }

  function feedbackRequest(label) {
    const { body, mode, predicted } = shownInput;
    const fields = { label, mode, predicted, source: "page" };
    if (typeof body === "string") {
      return { body: JSON.stringify({ ...JSON.parse(body), ...fields }),
               headers: { "Content-Type": "application/json" } };
    }
    const form = new FormData();
    form.append("image", body.get("image"));
    for (const [key, value] of Object.entries(fields)) form.append(key, value);
    return { body: form, headers: {} };
  }

  async function saveFix(label) {
    if (!shownInput) return;
    const status = $("fix-status");
    if (!/^[0-9]+$/.test(label)) {
      status.textContent = "Type the digits of the right number.";
      return;
    }
    clearTimeout(undoTimer);
    $("fix-undo").hidden = true;
    status.textContent = "Saving…";
    try {
      const res = await fetch("/api/feedback", { method: "POST", ...feedbackRequest(label) });
      const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
      if (!res.ok) {
        status.textContent = `Not saved: ${data.error || res.status}`;
        return;
      }
      status.textContent = `Thanks — saved as ${data.label}`;
      const undoButton = $("fix-undo");
      undoButton.dataset.id = String(data.id);
      undoButton.dataset.token = data.undo_token;
      undoButton.hidden = false;
      undoTimer = setTimeout(() => { undoButton.hidden = true; }, UNDO_MS);
    } catch {
      status.textContent = "Not saved: the server cannot be reached";
    }
  }

  async function undoFix() {
    const undoButton = $("fix-undo");
    clearTimeout(undoTimer);
    undoButton.hidden = true;
    try {
      const res = await fetch(`/api/feedback/${undoButton.dataset.id}`,
        { method: "DELETE", headers: { "X-Undo-Token": undoButton.dataset.token } });
      const data = await res.json().catch(() => ({}));
      $("fix-status").textContent = res.ok ? "Undone: not saved."
        : `Could not undo: ${data.error || res.status}`;
    } catch {
      $("fix-status").textContent = "Could not undo: the server cannot be reached";
    }
  }

  $("fix-digits").addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-digit]");
    if (button) saveFix(button.dataset.digit);
  });
  $("fix").addEventListener("submit", (ev) => {
    ev.preventDefault();
    saveFix($("fix-text").value.trim());
  });
  $("fix-undo").addEventListener("click", undoFix);

  setMode();
})();
