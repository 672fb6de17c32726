// digitrec page: drawing pad (pointer events), upload / drop / paste, live prediction.
// No build step, no dependencies. The pad is exported as a PNG of black ink on white.
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

  let strokes = []; // finished strokes: {width, points: [[x, y], ...]}
  let current = null; // the stroke being drawn
  let pointerId = null;
  let version = 0; // bumped on every change of the input; results say which one they answer
  let timer = null;
  let busy = false;
  let pending = false;
  let controller = null;

  const numberMode = () => $("mode-number").checked;
  const endpoint = () => (numberMode() ? "/api/read-number" : "/api/predict");
  const isEmpty = () => strokes.length === 0 && current === null;
  const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;

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
    pad.dataset.version = String(version);
    overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  }

  pad.addEventListener("pointerdown", (ev) => {
    if (ev.pointerType === "mouse" && ev.button !== 0) return;
    if (current) return; // one stroke at a time (ignore a second finger)
    ev.preventDefault();
    pad.setPointerCapture(ev.pointerId);
    pointerId = ev.pointerId;
    hidePreview();
    current = { width: Number($("pen-width").value), points: [toPad(ev)] };
    changed();
    render();
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
    predict();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  function undo() {
    if (current || strokes.length === 0) return;
    strokes.pop();
    changed();
    render();
    if (isEmpty()) resetResult(); else predict();
  }

  function clear() {
    strokes = [];
    current = null;
    changed();
    render();
    hidePreview();
    resetResult();
  }

  function setMode() {
    const [w, h] = SIZES[numberMode() ? "number" : "digit"];
    pad.width = overlay.width = w;
    pad.height = overlay.height = h;
    $("drop").classList.toggle("wide", numberMode());
    $("single").hidden = numberMode();
    $("number").hidden = !numberMode();
    clear();
  }

  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clear);
  $("mode-number").addEventListener("change", setMode);
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
  }

  // Photos over the server's upload limit are scaled down here first (the models only need
  // a few hundred pixels); white underneath keeps transparent PNGs readable.
  async function shrink(file) {
    const limit = Number(document.body.dataset.maxUpload || 0);
    if (!limit || file.size <= limit || !window.createImageBitmap) return file;
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
      return file; // not decodable here: let the server say what is wrong with it
    }
  }

  async function sendFile(file) {
    if (!file) return;
    strokes = [];
    current = null;
    changed();
    render();
    hidePreview();
    const forVersion = version;
    const img = $("upload-preview");
    img.src = URL.createObjectURL(file);
    img.hidden = false;
    const form = new FormData();
    form.append("image", await shrink(file), file.name || "upload");
    if (forVersion === version) request(form, forVersion, false);
  }

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

  function predict() {
    clearTimeout(timer);
    timer = null;
    if (isEmpty()) return;
    if (busy) {
      pending = true; // one request at a time; send the latest drawing when it returns
      return;
    }
    request(JSON.stringify({ image: pad.toDataURL("image/png") }), version, true);
  }

  async function request(body, forVersion, drawn) {
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    busy = true;
    result.setAttribute("aria-busy", "true");
    const headers = typeof body === "string" ? { "Content-Type": "application/json" } : {};
    try {
      const res = await fetch(endpoint(), { method: "POST", body, headers, signal: mine.signal });
      const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
      if (forVersion <= lastShown()) return; // an older answer arrived late
      if (res.ok) show(data, drawn); else showError(res.status, data.error);
      if (res.ok) offerFix(body, data); else hideFix();
      result.dataset.for = String(forVersion);
    } catch (err) {
      if (err.name !== "AbortError") showError(0, "the server cannot be reached");
    } finally {
      if (controller === mine) {
        controller = null;
        busy = false;
        result.setAttribute("aria-busy", "false");
        if (pending) {
          pending = false;
          predict();
        }
      }
    }
  }

  const lastShown = () => Number(result.dataset.for || -1);

  // ---- showing results ------------------------------------------------------------------

  function resetResult() {
    clearTimeout(timer);
    timer = null;
    pending = false;
    if (controller) controller.abort();
    for (const id of ["result-digit", "confidence", "result-number", "number-confidence", "ms"]) {
      $(id).textContent = "";
    }
    $("result-digit").classList.remove("unsure");
    $("unsure").hidden = true;
    $("number-unsure").hidden = true;
    $("error").hidden = true;
    $("models").replaceChildren();
    $("number-digits").replaceChildren();
    drawBars(null);
    $("seen").getContext("2d").clearRect(0, 0, 28, 28);
    hideFix();
    $("status").textContent = numberMode()
      ? "Write a few digits side by side." : "Draw a digit to start.";
    result.dataset.for = String(version);
  }

  function showError(status, message) {
    const text = status === 422 ? "No digit found: draw or upload one." : message || "error";
    $("error").textContent = text;
    $("error").hidden = false;
    $("status").textContent = status ? `Could not read it (${status}).` : "Offline?";
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
    const bars = $("bars");
    if (bars.children.length !== 10) {
      bars.replaceChildren(...Array.from({ length: 10 }, (_, d) => {
        const li = document.createElement("li");
        li.innerHTML = `<span class="bar-label">${d}</span>`
          + '<span class="bar-track"><span class="bar-fill"></span></span>'
          + '<span class="bar-value"></span>';
        return li;
      }));
    }
    const top = probs ? probs.indexOf(Math.max(...probs)) : -1;
    [...bars.children].forEach((li, d) => {
      const p = probs ? probs[d] : 0;
      li.classList.toggle("best", d === top);
      li.querySelector(".bar-fill").style.width = `${(100 * p).toFixed(1)}%`;
      li.querySelector(".bar-value").textContent = probs ? pct(p) : "";
      li.setAttribute("aria-label", probs ? `${d}: ${pct(p)}` : `${d}`);
    });
  }

  function show(data, drawn) {
    $("error").hidden = true;
    $("ms").textContent = `${data.ms} ms on the server`;
    if ("number" in data) showNumber(data, drawn); else showDigit(data);
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
  }

  function showNumber(r, drawn) {
    $("result-number").textContent = r.best_guess;
    $("number-confidence").textContent = pct(r.confidence);
    $("number-unsure").hidden = !r.abstained;
    $("status").textContent = r.abstained
      ? `Probably ${r.best_guess}, but not sure of every digit.` : `It reads ${r.number}.`;
    $("number-digits").replaceChildren(...r.digits.map((d) => {
      const li = document.createElement("li");
      li.classList.toggle("unsure", d.abstained);
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = 28;
      canvas.setAttribute("aria-hidden", "true");
      drawImage28(canvas, d.image28);
      const label = document.createElement("span");
      label.textContent = `${d.best_guess} · ${pct(d.confidence)}${d.abstained ? " ?" : ""}`;
      li.append(canvas, label);
      return li;
    }));
    if (drawn) drawBoxes(r.digits);
  }

  function drawBoxes(digits) {
    octx.clearRect(0, 0, overlay.width, overlay.height);
    octx.lineWidth = 2;
    octx.font = "bold 18px system-ui, sans-serif";
    for (const d of digits) {
      const [x0, y0, x1, y1] = d.box; // input pixels, right/bottom exclusive
      octx.strokeStyle = octx.fillStyle = d.abstained ? "#b45309" : "#1d4ed8";
      octx.strokeRect(x0 - 3, y0 - 3, x1 - x0 + 6, y1 - y0 + 6);
      octx.fillText(String(d.best_guess), x0, Math.max(18, y0 - 7));
    }
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
      const res = await fetch(`/api/feedback/${undoButton.dataset.id}`, { method: "DELETE" });
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
