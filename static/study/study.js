/* Participant front end: renders whatever step the server says is current.
   The server holds the step; this script never decides where a participant is. */
(function () {
  "use strict";
  // The interface's words come from Django's JavaScript catalog in the study's language
  // (/jsi18n/<lang>/, linked by the page); without it the English msgids are shown.
  const gettext = window.gettext || ((msg) => msg);
  const ngettext = window.ngettext || ((one, many, n) => (n === 1 ? one : many));
  const interpolate = window.interpolate || ((fmt, obj) => fmt.replace(/%\((\w+)\)s/g, (m, k) => String(obj[k])));
  // A translated sentence with element(s) inside it: "The answer is %(label)s." -> text, node, text.
  function fill(fmt, slots) {
    return fmt.split(/(%\(\w+\)s)/).filter((part) => part !== "").map((part) => {
      const m = part.match(/^%\((\w+)\)s$/);
      return m && m[1] in slots ? slots[m[1]] : part;
    });
  }
  function fmt(msg, values) { return interpolate(msg, values, true); }
  const API = window.STUDY.api;
  const app = document.getElementById("app");
  const errorBox = document.getElementById("error");
  const progress = document.getElementById("progress");
  const prolific = JSON.parse(document.getElementById("prolific").textContent || "{}");
  let busy = false;
  let state = null;
  // Responses can arrive out of order (e.g. a reload's GET racing a click's POST):
  // only the answer to the newest request is rendered.
  let issued = 0;
  let shown = 0;

  function csrf() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function call(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRFToken"] = csrf();
      opts.body = JSON.stringify(body);
    }
    const seq = ++issued;
    const res = await fetch(API + path, opts);
    let data = {};
    try { data = await res.json(); } catch (e) { data = {}; }
    return { ok: res.ok, status: res.status, data, seq };
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (v === true) el.setAttribute(k, "");
      else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return el;
  }

  function showError(msg) { errorBox.textContent = msg; errorBox.hidden = !msg; }

  // Interaction events go through flow.js's queue: batched, retried, flushed when the page hides.
  let flow = null;
  function logEvent(kind, payload) { if (flow) flow.push(kind, payload); }

  async function act(method, path, body) {
    if (busy) return;
    busy = true;
    showError("");
    document.querySelectorAll("#app button").forEach((b) => (b.disabled = true));
    try {
      const r = await call(method, path, body);
      if (r.ok) { render(r.data, r.seq); return r.data; }
      // The server refuses steps out of order and tells us where we really are.
      if (r.data && r.data.state) render(r.data.state, r.seq);
      else if (r.status === 403 && r.data.error === "no_participant") await load();
      else document.querySelectorAll("#app button").forEach((b) => (b.disabled = false));
      if (r.data && r.data.state && r.data.state.kind === "exit") return r.data;  // the exit page says it all
      showError((r.data && r.data.detail) || fmt(gettext("Something went wrong (%(status)s). Please try again."), { status: r.status }));
    } catch (e) {
      document.querySelectorAll("#app button").forEach((b) => (b.disabled = false));
      showError(gettext("Could not reach the server. Check your connection and try again; your answers so far are saved."));
    } finally {
      busy = false;
    }
  }

  async function load() {
    // A run started elsewhere resumes here only with the SESSION_ID it was started with.
    const q = prolific.prolific_pid ? "?PROLIFIC_PID=" + encodeURIComponent(prolific.prolific_pid) +
      "&SESSION_ID=" + encodeURIComponent(prolific.session_id || "") : "";
    const r = await call("GET", "state" + q);
    if (r.ok) render(r.data, r.seq);
    else {
      // e.g. 403 resume_refused: the server's sentence says what to do; nothing else is shown.
      const loading = document.getElementById("loading");
      if (loading) loading.remove();
      showError((r.data && r.data.detail) || gettext("This study could not be loaded."));
    }
  }

  function setProgress(s) {
    if (s.kind === "trial") progress.textContent = fmt(gettext("Question %(n)s of %(total)s"), { n: s.trial + 1, total: s.n_trials });
    else if (s.kind === "simulation_test") progress.textContent = fmt(gettext("Question %(n)s of %(total)s"), { n: s.item + 1, total: s.n_items });
    else if (s.kind === "simulation_learn") progress.textContent = fmt(gettext("Example %(n)s of %(total)s"), { n: s.item + 1, total: s.n_items });
    else if (s.kind === "decision_alone" || s.kind === "decision_assisted") progress.textContent = fmt(gettext("Question %(n)s of %(total)s"), { n: s.item + 1, total: s.n_items });
    else if (s.kind === "bias_mark") progress.textContent = fmt(gettext("Question %(n)s of %(total)s"), { n: s.item + 1, total: s.n_items });
    else if (s.kind === "hive_agreement" || s.kind === "hive_distinction") progress.textContent = fmt(gettext("Question %(n)s of %(total)s"), { n: s.item + 1, total: s.n_items });
    else if (s.kind === "grouping") progress.textContent = fmt(gettext("Part %(n)s of %(total)s"), { n: s.dataset_position, total: s.n_batches });
    else if (s.kind === "done") progress.textContent = gettext("Finished");
    else progress.textContent = "";
  }

  const views = {
    unavailable(s) {
      return [h("p", {}, s.detail || gettext("This study is not available."))];
    },
    consent(s) {
      const box = h("input", { type: "checkbox", id: "agree", name: "agree" });
      const btn = h("button", { id: "consent-go", disabled: true, onclick: () =>
        act("POST", "enter", { consent: true, prolific_pid: prolific.prolific_pid || "",
          study_id: prolific.study_id || "", session_id: prolific.session_id || "" }) }, gettext("Continue"));
      box.addEventListener("change", () => (btn.disabled = !box.checked));
      const decline = h("button", { class: "secondary", id: "consent-decline", onclick: () =>
        act("POST", "enter", { consent: false, prolific_pid: prolific.prolific_pid || "",
          study_id: prolific.study_id || "", session_id: prolific.session_id || "" }) }, gettext("I do not consent"));
      // The scroll box is focusable and named, so a keyboard reaches and scrolls it (WCAG 2.1.1).
      return [h("h2", { id: "consent-title" }, gettext("Consent")),
        h("div", { class: "consent", tabindex: 0, role: "region", "aria-labelledby": "consent-title" }, s.consent_text),
        h("label", { class: "check", for: "agree" }, box, gettext("I have read the information above and agree to take part.")),
        h("div", { class: "actions" }, decline, btn)];
    },
    instructions(s) {
      if (s.design === "hive") return hiveInstructions(s);
      if (s.design === "clustering") {
        return [
          h("p", {}, s.cover_story),
          h("p", {}, h("strong", {}, gettext("How it works:"))),
          h("ol", { class: "steps" }, s.instructions.map((t) => h("li", {}, t))),
          h("div", { class: "actions" }, h("button", { id: "start", onclick: () => act("POST", "steps/" + s.step + "/continue", {}) }, gettext("Start"))),
        ];
      }
      return [
        h("p", {}, s.cover_story),
        h("ul", { class: "bullets" },
          h("li", {}, gettext("You will be shown a picture of a symbol and asked what symbol it is.")),
          h("li", { id: "arm-instruction" }, s.arm_instruction)),
        // (a decision study does not measure learning: its participants are not told it does)
        ...(s.design === "decision" ? [] : [h("p", {}, gettext("We are evaluating this system by measuring how much your performance gets better over the trial."))]),
        h("p", {}, h("strong", {}, gettext("Read these instructions before you begin:"))),
        h("ol", { class: "steps" }, s.instructions.map((t) => h("li", {}, t))),
        h("div", { class: "actions" }, h("button", { id: "start", onclick: () => act("POST", "steps/" + s.step + "/continue", {}) }, gettext("Start"))),
      ];
    },
    trial(s) {
      const img = h("img", { class: "stimulus", src: s.image_url, alt: gettext("Symbol to classify"), width: 224, height: 224 });
      // The browser's own response time starts when the image is on screen.
      if (!s.answered) img.addEventListener("load", () => { img.dataset.shownAt = String(performance.now()); }, { once: true });
      const answered = s.answered;
      const name = "choice-" + s.step;
      const opts = h("div", { class: "options", role: "radiogroup", "aria-label": s.question },
        s.options.map((o) => h("label", {},
          h("input", { type: "radio", name, value: o.value, disabled: answered,
            checked: answered && s.feedback.choice === o.value,
            onchange: () => { const b = document.getElementById("instant"); if (b) b.disabled = false; } }),
          h("span", {}, o.label))));
      const parts = [h("p", { class: "muted" }, s.question), img, opts];
      if (!answered) {
        parts.push(h("div", { class: "actions" }, h("button", { id: "instant", disabled: true, onclick: () => {
          const picked = document.querySelector('input[name="' + name + '"]:checked');
          if (!picked) { showError(gettext("Choose one of the answers first.")); return; }
          const answer = { stimulus: s.stimulus, choice: Number(picked.value) };
          if (img.dataset.shownAt) answer.client_ms = Math.max(0, Math.round(performance.now() - Number(img.dataset.shownAt)));
          act("POST", "steps/" + s.step + "/answer", answer);
        } }, gettext("Instant answer"))));
      } else {
        parts.push(feedbackView(s));
        const last = s.trial + 1 === s.n_trials;
        parts.push(h("div", { class: "actions" }, h("button", { id: "next", onclick: () => act("POST", "steps/" + s.step + "/continue", {}) }, last ? gettext("Submit") : gettext("Next"))));
      }
      return parts;
    },
    // Forward simulation (designs/simulation.py): a test item asks for the model's answer and
    // moves on with no feedback; a learning item shows the model's answer and the arm's explanation.
    simulation_test(s) {
      const img = h("img", { class: "stimulus", src: s.image_url, alt: gettext("Picture to predict the system's answer for"), width: 224, height: 224 });
      img.addEventListener("load", () => { img.dataset.shownAt = String(performance.now()); }, { once: true });
      const name = "choice-" + s.step;
      const opts = h("div", { class: "options", role: "radiogroup", "aria-labelledby": "sim-q" },
        s.options.map((o) => h("label", {},
          h("input", { type: "radio", name, value: o.value,
            onchange: () => { const b = document.getElementById("sim-answer"); if (b) b.disabled = false; } }),
          h("span", {}, o.label))));
      const btn = h("button", { id: "sim-answer", disabled: true, onclick: () => {
        const picked = document.querySelector('input[name="' + name + '"]:checked');
        if (!picked) { showError(gettext("Choose one of the answers first.")); return; }
        const answer = { stimulus: s.stimulus, choice: Number(picked.value) };
        if (img.dataset.shownAt) answer.client_ms = Math.max(0, Math.round(performance.now() - Number(img.dataset.shownAt)));
        act("POST", "steps/" + s.step + "/answer", answer);
      } }, gettext("Next"));
      return [h("h2", { id: "sim-q" }, s.question), img, opts, h("div", { class: "actions" }, btn)];
    },
    simulation_learn(s) {
      const e = s.explanation || {};
      const a = e.assets || {};
      const parts = [h("h2", {}, gettext("Learn how the system answers")),
        h("img", { class: "stimulus", src: s.image_url, alt: gettext("Picture the system answered"), width: 224, height: 224 }),
        h("p", { class: "answer", id: "model-answer" }, fill(gettext("The system answers %(label)s."), { label: h("strong", {}, s.model_answer_label) }))];
      if ((e.kind === "gradcam" || e.kind === "gad") && a.overlay) {
        parts.push(h("div", { class: "feedback" }, h("figure", {},
          h("img", { src: a.overlay, alt: gettext("Heatmap over the picture: coloured areas are the parts the system weighed"), id: "heatmap" }),
          legendView(e.legend), h("figcaption", {}, fmt(gettext("Parts the system found important for %(symbol)s"), { symbol: s.model_answer_label })))));
      } else if ((e.kind === "cdeepex" || e.kind === "xgems") && (a.webp || a.gif)) {
        const src = a.gif || a.webp;
        const anim = h("img", { src, alt: gettext("Animation: the picture changes step by step towards the other answer"), id: "morph" });
        let n = 0;
        const replay = h("button", { class: "secondary", id: "replay", onclick: () => { n += 1; anim.src = src + "?replay=" + n; logEvent("replay", { item: s.item }); } }, gettext("Replay"));
        parts.push(h("div", { class: "feedback" }, h("figure", {}, anim, h("figcaption", {}, gettext("How this picture would change for the other answer"))), replay));
      }
      parts.push(h("div", { class: "actions" }, h("button", { id: "next", onclick: () => act("POST", "steps/" + s.step + "/continue", {}) }, gettext("Next"))));
      return parts;
    },
    // AI-assisted decision (designs/decision.py): each item is answered alone first, then again
    // with the system's answer and the arm's explanation (the server says which half is current).
    decision_alone(s) {
      return decisionAnswer(s, [h("h2", { id: "decision-q" }, s.question)], gettext("Picture to decide on"), gettext("Next"));
    },
    decision_assisted(s) {
      const e = s.explanation || {};
      const a = e.assets || {};
      const advice = [h("h2", { id: "decision-q" }, s.question),
        h("p", { class: "answer", id: "own-answer" }, fill(gettext("Your first answer: %(label)s."), { label: h("strong", {}, s.own_answer_label) })),
        h("p", { class: "answer", id: "model-answer" }, fill(gettext("The system answers %(label)s."), { label: h("strong", {}, s.model_answer_label) }))];
      let shown = null;
      if ((e.kind === "gradcam" || e.kind === "gad") && a.overlay) {
        shown = h("figure", {}, h("img", { src: a.overlay, alt: gettext("Heatmap over the picture: coloured areas are the parts the system weighed"), id: "heatmap" }),
          legendView(e.legend), h("figcaption", {}, fmt(gettext("Parts the system found important for %(symbol)s"), { symbol: s.model_answer_label })));
      } else if (e.kind === "nearest" && a.examples) {
        shown = h("figure", {}, h("img", { src: a.examples, id: "examples", class: "examples",
          alt: fmt(gettext("Pictures the system learned from as %(label)s, most like this one first"), { label: s.model_answer_label }) }),
        h("figcaption", {}, fmt(gettext("Pictures the system learned from as %(label)s that it finds most like this one"), { label: s.model_answer_label })));
      } else if ((e.kind === "cdeepex" || e.kind === "xgems") && (a.webp || a.gif)) {
        shown = h("figure", {}, h("img", { src: a.gif || a.webp, alt: gettext("Animation: the picture changes step by step towards the other answer"), id: "morph" }),
          h("figcaption", {}, gettext("How this picture would change for the other answer")));
      }
      if (shown) advice.push(h("div", { class: "feedback" }, shown));
      return decisionAnswer(s, advice, gettext("Picture to decide on"), gettext("Submit final answer"));
    },
    // Bias discovery (designs/bias.py): mark where on the picture the system looks (drag a box
    // over it, or choose cells of the grid under it: keyboard and phone), and on the last
    // picture choose what it relies on. The box is sent in the image's own pixels.
    bias_mark(s) {
      const [w, h2] = s.image_size;
      const n = s.grid;
      let box = null;  // [x0, y0, x1, y1] in image pixels
      const cells = new Set();
      const frame = h("div", { id: "mark-box", class: "mark-box", "aria-hidden": "true", hidden: true });
      const img = h("img", { class: "stimulus", src: s.image_url, alt: gettext("Picture to mark"), width: 224, height: 224,
        draggable: "false" });
      const area = h("div", { id: "mark-area", class: "mark-area" }, img, frame);
      const said = h("p", { id: "mark-said", class: "note", "aria-live": "polite" }, gettext("Nothing marked yet."));
      const next = h("button", { id: "bias-next", disabled: true, onclick: submit }, gettext("Next"));
      const cueName = "cue-" + s.step;
      function ready() { next.disabled = !box || (s.cues && !document.querySelector('input[name="' + cueName + '"]:checked')); }
      function where(b) {
        const third = (v, size) => (v < size / 3 ? 0 : v < (2 * size) / 3 ? 1 : 2);
        const rows = [gettext("top"), gettext("middle"), gettext("bottom")];
        const cols = [gettext("left"), gettext("centre"), gettext("right")];
        const cx = (b[0] + b[2]) / 2, cy = (b[1] + b[3]) / 2;
        return fmt(gettext("Marked: a box in the %(row)s %(col)s of the picture, covering %(pct)s per cent of it."),
          { row: rows[third(cy, h2)], col: cols[third(cx, w)], pct: Math.round((100 * (b[2] - b[0]) * (b[3] - b[1])) / (w * h2)) });
      }
      function show(b, fromGrid, moving) {
        box = b;
        if (!fromGrid) { cells.clear(); grid.querySelectorAll("button").forEach((c) => pressed(c, false)); }
        const pct = (v, size) => (100 * v) / size + "%";  // of the picture, so it follows a resize
        Object.assign(frame.style, { left: pct(b[0], w), top: pct(b[1], h2), width: pct(b[2] - b[0], w), height: pct(b[3] - b[1], h2) });
        frame.hidden = false;
        if (!moving) said.textContent = where(b);  // said once the box is drawn, not at every move
        ready();
      }
      // Drawing with a mouse, pen or finger: the box between where the pointer went down and up.
      let start = null;
      function pixel(ev) {
        const r = area.getBoundingClientRect();
        return [Math.min(w, Math.max(0, ((ev.clientX - r.left) / r.width) * w)), Math.min(h2, Math.max(0, ((ev.clientY - r.top) / r.height) * h2))];
      }
      function spanOf(a, b) {
        const x0 = Math.floor(Math.min(a[0], b[0])), y0 = Math.floor(Math.min(a[1], b[1]));
        const x1 = Math.max(x0 + 1, Math.min(w, Math.ceil(Math.max(a[0], b[0])))), y1 = Math.max(y0 + 1, Math.min(h2, Math.ceil(Math.max(a[1], b[1]))));
        return [Math.min(x0, w - 1), Math.min(y0, h2 - 1), x1, y1];
      }
      area.addEventListener("pointerdown", (ev) => { ev.preventDefault(); start = pixel(ev); area.setPointerCapture(ev.pointerId); });
      area.addEventListener("pointermove", (ev) => { if (start) show(spanOf(start, pixel(ev)), false, true); });
      area.addEventListener("pointerup", (ev) => {
        if (!start) return;
        const end = pixel(ev);
        show(spanOf(start, end), false);
        start = null;
        logEvent("bias_mark", { item: s.item, how: "drawn", box });
      });
      // The grid: each cell a button; the box covers the cells chosen (their bounding box).
      function pressed(btn, on) { btn.setAttribute("aria-pressed", on ? "true" : "false"); }
      function fromCells() {
        if (!cells.size) { box = null; frame.hidden = true; said.textContent = gettext("Nothing marked yet."); ready(); return; }
        const rs = [...cells].map((k) => Math.floor(k / n)), cs = [...cells].map((k) => k % n);
        show([Math.floor((Math.min(...cs) * w) / n), Math.floor((Math.min(...rs) * h2) / n),
          Math.floor(((Math.max(...cs) + 1) * w) / n), Math.floor(((Math.max(...rs) + 1) * h2) / n)], true);
      }
      const grid = h("div", { id: "mark-grid", class: "mark-grid", role: "group", "aria-labelledby": "mark-grid-label" },
        Array.from({ length: n * n }, (_, k) => h("button", { type: "button", class: "secondary small", "aria-pressed": "false",
          "aria-label": fmt(gettext("%(cell)s: row %(row)s, column %(col)s"), { cell: String.fromCharCode(65 + (k % n)) + (Math.floor(k / n) + 1), row: Math.floor(k / n) + 1, col: (k % n) + 1 }),
          "data-cell": k,
          onclick: (ev) => {
            if (cells.has(k)) cells.delete(k); else cells.add(k);
            pressed(ev.currentTarget, cells.has(k));
            fromCells();
            logEvent("bias_mark", { item: s.item, how: "grid", cells: [...cells] });
          } }, String.fromCharCode(65 + (k % n)) + (Math.floor(k / n) + 1))));
      grid.style.setProperty("--cells", String(n));
      const parts = [h("h2", { id: "mark-q" }, s.region_question),
        h("p", { class: "prompt" }, gettext("Drag a box over that part of the picture, or choose one or more cells of the grid below: the grid's cells are the picture's parts.")),
        area, said,
        h("p", { id: "mark-grid-label", class: "note" }, fmt(gettext("The picture as a grid of %(n)s by %(n)s parts:"), { n })), grid];
      if (s.cues) {
        parts.push(h("h3", { id: "cue-q" }, s.cue_question), h("div", { class: "options cues", role: "radiogroup", "aria-labelledby": "cue-q" },
          s.cues.map((c) => h("label", {}, h("input", { type: "radio", name: cueName, value: c.value, onchange: ready }), h("span", {}, c.label)))));
      }
      function submit() {
        if (!box) { showError(gettext("Mark a part of the picture first.")); return; }
        const answers = {};
        answers[s.mark_key] = box;
        if (s.cues) {
          const picked = document.querySelector('input[name="' + cueName + '"]:checked');
          if (!picked) { showError(gettext("Choose one of the answers first.")); return; }
          answers[s.cue_key] = Number(picked.value);
        }
        act("POST", "steps/" + s.step + "/questions", { answers });
      }
      parts.push(h("div", { class: "actions" }, next));
      return parts;
    },
    // HIVE (designs/hive.py): agreement asks for confidence in the model's answer on a 4-point
    // scale; distinction shows four maps labelled A-D (a 2×2 grid on a phone) and asks which
    // one is the model's answer. Both answer with the questions action; no feedback.
    hive_agreement(s) { return hiveAgreement(s); },
    hive_distinction(s) { return hiveDistinction(s); },
    rating(s) {
      const name = "rating";
      const btn = h("button", { id: "submit-rating", disabled: true, onclick: () => {
        const picked = document.querySelector('input[name="rating"]:checked');
        if (!picked) { showError(gettext("Choose one option.")); return; }
        act("POST", "steps/" + s.step + "/questions", { answers: { [s.key]: Number(picked.value) } });
      } }, gettext("Submit"));
      return [h("h2", { id: "rating-q" }, s.question),
        h("div", { class: "scale", role: "radiogroup", "aria-labelledby": "rating-q" }, s.scale.map((o) => h("label", {},
          h("input", { type: "radio", name, value: o.value, onchange: () => (btn.disabled = false) }), o.label))),
        h("div", { class: "actions" }, btn)];
    },
    questions(s) {
      const form = h("form", { class: "questions", id: "questions", onsubmit: (e) => e.preventDefault() });
      s.questions.forEach((q, qi) => {
        const name = "q-" + qi;
        let field;
        if (q.type === "text") {
          field = h("textarea", { name, id: name, rows: 3, maxlength: 5000, "data-key": q.key });
        } else if (q.type === "choice") {
          field = h("div", { class: "scale", role: "radiogroup", "aria-labelledby": name + "-label" },
            q.options.map((o) => h("label", {}, h("input", { type: "radio", name, value: o, "data-key": q.key }), o)));
        } else {
          const first = q.first_value === undefined ? 1 : q.first_value;
          field = h("div", { class: "scale scale-row", role: "radiogroup", "aria-labelledby": name + "-label" },
            // q.values: each option's code in the order shown (e.g. the paper's 'Very Good' first, coded 7)
            q.options.map((o, i) => h("label", {}, h("input", { type: "radio", name, value: q.values ? q.values[i] : first + i, "data-key": q.key, "data-int": "1" }), o)));
        }
        form.appendChild(h("fieldset", { class: "question" },
          h("legend", { id: name + "-label" }, q.label + (q.optional ? "" : " *")), field));
      });
      const submit = h("button", { id: "submit-questions", onclick: () => {
        const answers = {};
        s.questions.forEach((q, qi) => {
          const name = "q-" + qi;
          if (q.type === "text") { answers[q.key] = form.querySelector("#" + name).value; return; }
          const picked = form.querySelector('input[name="' + name + '"]:checked');
          if (picked) answers[q.key] = picked.dataset.int ? Number(picked.value) : picked.value;
        });
        const missing = s.questions.filter((q) => !q.optional && (answers[q.key] === undefined || answers[q.key] === ""));
        if (missing.length) { showError(fmt(gettext("Please answer: %(question)s"), { question: missing[0].label })); return; }
        act("POST", "steps/" + s.step + "/questions", { answers });
      } }, gettext("Continue"));
      return [h("h2", {}, s.title || gettext("Questions")), form, h("div", { class: "actions" }, submit)];
    },
    grouping(s) { return groupingView(s); },
    done(s) {
      const parts = [h("h2", {}, gettext("Thank you!")), h("p", {}, s.completion_text)];
      if (s.completion_code) parts.push(h("p", {}, fill(gettext("Your completion code: %(code)s"), { code: h("span", { class: "code", id: "completion-code" }, s.completion_code) })));
      if (s.redirect_url) {
        parts.push(h("p", {}, h("a", { href: s.redirect_url, id: "redirect" }, gettext("Return to Prolific"))));
        setTimeout(() => { window.location.assign(s.redirect_url); }, 2500);
      }
      return parts;
    },
  };

  // One half of a decision item: the picture, what comes with it (`head`), the two answers as
  // radio buttons (values are positions, never class ids) and the button that sends the choice.
  function decisionAnswer(s, head, alt, label) {
    const img = h("img", { class: "stimulus", src: s.image_url, alt, width: 224, height: 224 });
    img.addEventListener("load", () => { img.dataset.shownAt = String(performance.now()); }, { once: true });
    const name = "choice-" + s.step;
    const opts = h("div", { class: "options", role: "radiogroup", "aria-labelledby": "decision-q" },
      s.options.map((o) => h("label", {},
        h("input", { type: "radio", name, value: o.value,
          onchange: () => { const b = document.getElementById("decide"); if (b) b.disabled = false; } }),
        h("span", {}, o.label))));
    const btn = h("button", { id: "decide", disabled: true, onclick: () => {
      const picked = document.querySelector('input[name="' + name + '"]:checked');
      if (!picked) { showError(gettext("Choose one of the answers first.")); return; }
      const answer = { stimulus: s.stimulus, choice: Number(picked.value) };
      if (img.dataset.shownAt) answer.client_ms = Math.max(0, Math.round(performance.now() - Number(img.dataset.shownAt)));
      act("POST", "steps/" + s.step + "/answer", answer);
    } }, label);
    return [head[0], img, ...head.slice(1), opts, h("div", { class: "actions" }, btn)];
  }

  function hiveInstructions(s) {
    const parts = [h("p", {}, s.cover_story)];
    if (s.arm_instruction) parts.push(h("ul", { class: "bullets" }, h("li", { id: "arm-instruction" }, s.arm_instruction)));
    parts.push(h("p", {}, h("strong", {}, gettext("Read these instructions before you begin:"))),
      h("ol", { class: "steps" }, s.instructions.map((t) => h("li", {}, t))),
      h("div", { class: "actions" }, h("button", { id: "start", onclick: () => act("POST", "steps/" + s.step + "/continue", {}) }, gettext("Start"))));
    return parts;
  }

  function hiveAgreement(s) {
    const e = s.explanation || {};
    const a = e.assets || {};
    const parts = [h("img", { class: "stimulus", src: s.image_url, alt: gettext("Picture the system answered"), width: 224, height: 224 }),
      h("p", { class: "answer", id: "model-answer" }, fill(gettext("The system answers %(label)s."), { label: h("strong", {}, s.model_answer_label) }))];
    if (a.overlay) {
      parts.push(h("div", { class: "feedback" }, h("figure", {},
        h("img", { src: a.overlay, alt: gettext("Heatmap over the picture: coloured areas are the parts the system weighed"), id: "heatmap" }),
        legendView(e.legend), h("figcaption", {}, fmt(gettext("Parts the system found important for %(symbol)s"), { symbol: s.model_answer_label })))));
    }
    const btn = h("button", { id: "hive-answer", disabled: true, onclick: () => {
      const picked = document.querySelector('input[name="hive-confidence"]:checked');
      if (!picked) { showError(gettext("Choose one option.")); return; }
      act("POST", "steps/" + s.step + "/questions", { answers: { [s.key]: Number(picked.value) } });
    } }, gettext("Next"));
    parts.push(h("h2", { id: "hive-q" }, s.question),
      h("div", { class: "scale", role: "radiogroup", "aria-labelledby": "hive-q" }, s.scale.map((o) => h("label", {},
        h("input", { type: "radio", name: "hive-confidence", value: o.value, onchange: () => (btn.disabled = false) }), o.label))),
      h("div", { class: "actions" }, btn));
    return parts;
  }

  function hiveDistinction(s) {
    const btn = h("button", { id: "hive-answer", disabled: true, onclick: () => {
      const picked = document.querySelector('input[name="hive-choice"]:checked');
      if (!picked) { showError(gettext("Choose one of the explanations first.")); return; }
      act("POST", "steps/" + s.step + "/questions", { answers: { [s.key]: Number(picked.value) } });
    } }, gettext("Next"));
    const grid = h("div", { class: "hive-grid", role: "radiogroup", "aria-labelledby": "hive-q" }, s.options.map((o) => h("label", { id: "hive-option-" + o.label },
      h("img", { src: o.url, alt: fmt(gettext("Explanation %(letter)s: heatmap over the picture"), { letter: o.label }), width: 224, height: 224 }),
      h("span", { class: "letter" }, h("input", { type: "radio", name: "hive-choice", value: o.value, onchange: () => (btn.disabled = false) }), o.label))));
    return [h("h2", { id: "hive-q" }, s.question),
      h("p", { class: "muted" }, gettext("Each picture shows what the system looked at for one possible answer. One of them is for the answer the system gave.")),
      h("img", { class: "stimulus", src: s.image_url, alt: gettext("Picture the system answered"), width: 224, height: 224 }),
      grid, legendView(s.legend), h("div", { class: "actions" }, btn)];
  }

  // A heatmap's colour scale, with words at both ends: its meaning never rests on colour alone.
  function legendView(url) {
    if (!url) return null;
    return h("div", { class: "legend", id: "legend" }, h("span", {}, gettext("less important")),
      h("img", { src: url, alt: "", class: "legend-bar", width: 128, height: 12 }), h("span", {}, gettext("more important")));
  }

  // GAD answers a contrastive question (like CDeepEx): which parts tell this symbol from the other.
  function gadCaption(s) {
    const other = (s.options || []).map((o) => o.label).find((l) => l !== s.feedback.correct_label);
    return fmt(gettext("Parts that tell %(symbol)s apart from %(other)s"), { symbol: s.feedback.correct_label, other: other || gettext("the other symbol") });
  }

  function feedbackView(s) {
    const f = s.feedback;
    const out = [h("p", { class: "verdict " + (f.correct ? "ok" : "bad"), id: "verdict" }, f.correct ? gettext("Correct!") : gettext("Not correct.")),
      h("p", { class: "answer" }, fill(gettext("The answer is %(label)s."), { label: h("strong", { id: "correct-label" }, f.correct_label) }))];
    const a = f.assets || {};
    if ((f.kind === "gradcam" || f.kind === "gad") && a.overlay) {
      out.push(h("div", { class: "feedback" }, h("figure", {}, h("img", { src: a.overlay, alt: gettext("Heatmap over the picture: coloured areas are the parts the system weighed"), id: "heatmap" }),
        legendView(f.legend),
        h("figcaption", {}, f.kind === "gad" ? gadCaption(s) : fmt(gettext("Parts the system found important for %(symbol)s"), { symbol: f.correct_label })))));
    } else if ((f.kind === "cdeepex" || f.kind === "xgems") && (a.webp || a.gif)) {
      // The file the gate decoded: grey morphs have an exact GIF (shown) and WebP; colour morphs
      // have only their lossless WebP (a GIF's 256 colours would move the morph off the boundary).
      const src = a.gif || a.webp;
      const anim = h("img", { src, alt: gettext("Animation: this symbol changes step by step towards the other symbol"), id: "morph" });
      // Played to its end: one loop of visible time after it loads (a replay loads it again).
      if (flow) flow.watchAnimation(anim, f.animation_ms, s.step, s.trial);
      let n = 0;
      const replay = h("button", { class: "secondary", id: "replay", onclick: () => {
        n += 1; anim.src = src + "?replay=" + n; logEvent("replay", { trial: s.trial });
      } }, gettext("Replay"));
      out.push(h("div", { class: "feedback" }, h("figure", {}, anim, h("figcaption", {}, gettext("How this symbol turns towards the other symbol"))), replay));
    }
    return h("div", { id: "feedback" }, out);
  }

  /* ---------------- Clustering: drag images into groups (or select + "Move here") ----------------
     Dragging is SortableJS (static/vendor/sortablejs): one shared group joins the "not grouped yet"
     tray and every group box, with the mouse (HTML5 drag and drop) and with a finger (touch events)
     alike. Sortable only moves the card on screen; the drop is read back into `where` and the board
     redrawn from it, so the assignment sent to the server is built as before. */
  function groupingView(s) {
    const where = {};          // image id -> group index, or -1 for "not grouped yet"
    s.images.forEach((img) => (where[img.id] = -1));
    // As many boxes as the batch must use (the server's rule: exactly or at most `max_groups`).
    let nGroups = Math.min(s.max_groups, Math.max(2, s.min_groups || 1));
    const selected = new Set();
    let showAll = false;
    const activeX = new Set((s.images[0] && s.images[0].xfeatures ? s.images[0].xfeatures : []).map((x) => x.index));
    const root = h("div", { class: "grouping stage-" + s.stage.replace(/[^A-Za-z]/g, "") });
    const byId = Object.fromEntries(s.images.map((img) => [img.id, img]));

    function contributionChip(x) {
      const c = x.contribution;
      return h("span", { class: "contrib " + (c >= 0 ? "pos" : "neg"), title: gettext("Contribution to the decision") }, (c >= 0 ? "+" : "") + c.toFixed(2));
    }

    function card(img) {
      // Its accessible name is its content (the image's alt, "Selected", the contributions), so the
      // name holds the visible text (WCAG 2.5.3); aria-pressed says whether it is selected.
      const el = h("div", { class: "card-img" + (selected.has(img.id) ? " selected" : ""), tabindex: 0,
        role: "button", "aria-pressed": selected.has(img.id) ? "true" : "false", "data-id": img.id });
      if (selected.has(img.id)) el.appendChild(h("div", { class: "banner" }, gettext("Selected")));
      const main = h("img", { src: img.url, alt: fmt(gettext("Image %(id)s"), { id: img.id }), class: "thumb", draggable: "false" });
      el.appendChild(main);
      if (img.heatmap) {
        const overlay = h("img", { src: img.heatmap, alt: gettext("Heatmap over the image"), class: "thumb heat" + (showAll ? " on" : ""), draggable: "false" });
        el.appendChild(overlay);
        el.addEventListener("mouseenter", () => { overlay.classList.add("on"); logEvent("hover", { image: img.id }); });
        el.addEventListener("mouseleave", () => { if (!showAll) overlay.classList.remove("on"); });
        // The keyboard's hover: a focused card shows its heatmap too (WCAG 2.1.1).
        el.addEventListener("focus", () => { overlay.classList.add("on"); logEvent("hover", { image: img.id, via: "focus" }); });
        el.addEventListener("blur", () => { if (!showAll) overlay.classList.remove("on"); });
      }
      if (img.xfeatures) {
        el.appendChild(h("div", { class: "xrow" }, img.xfeatures.filter((x) => activeX.has(x.index)).map((x) =>
          h("figure", { class: "xfeat" }, contributionChip(x), h("img", { src: x.url, alt: fmt(gettext("Heatmap %(n)s"), { n: x.index + 1 }), draggable: "false" })))));
      }
      el.addEventListener("click", () => toggleSelect(img.id));
      el.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggleSelect(img.id); } });
      return el;
    }

    function toggleSelect(id) {
      if (selected.has(id)) selected.delete(id); else selected.add(id);
      logEvent("select", { image: id, selected: selected.has(id) });
      draw();
      announce(fmt(selected.has(id) ? gettext("Image %(id)s selected.") : gettext("Image %(id)s not selected."), { id })
        + " " + fmt(ngettext("%(n)s image selected.", "%(n)s images selected.", selected.size), { n: selected.size }));
      const again = root.querySelector('.card-img[data-id="' + id + '"]');
      if (again) again.focus({ preventScroll: true });
    }

    function move(ids, group, via) {
      ids.forEach((id) => (where[id] = group));
      logEvent("move", { images: ids, group, via });
      selected.clear();
      draw();
      // Say what happened (a live region) and put the focus where the next move starts: the next
      // image still to group, else the Done button (WCAG 2.5.7's single-pointer and keyboard path).
      const left = s.images.filter((img) => where[img.id] === -1).length;
      const title = group < 0 ? gettext("Not grouped yet") : fmt(gettext("Group %(n)s"), { n: group + 1 });
      announce(fmt(ngettext("%(n)s image moved to %(group)s.", "%(n)s images moved to %(group)s.", ids.length), { n: ids.length, group: title })
        + " " + fmt(ngettext("%(n)s image left.", "%(n)s images left.", left), { n: left }));
      if (via !== "drag") {
        const next = root.querySelector(".tray .card-img") || root.querySelector("#done-grouping:not([disabled])") || root.querySelector("#new-group");
        if (next) next.focus({ preventScroll: false });
      }
    }

    // The cards are direct children of the box (after its header), so that the whole box, header
    // included, is a drop target for Sortable.
    function zone(group, title) {
      const members = s.images.filter((img) => where[img.id] === group);
      const box = h("section", { class: "zone" + (group < 0 ? " tray" : ""), "data-group": group, "aria-labelledby": "zone-title-" + group },
        h("header", {}, h("span", { class: "zone-title", id: "zone-title-" + group }, fmt(gettext("%(group)s (%(count)s)"), { group: title, count: members.length })),
          h("button", { class: "secondary small", "data-move": group, disabled: selected.size === 0, onclick: () => move([...selected], group, "button") },
            h("span", { class: "wide-only" }, gettext("Move selected here")), h("span", { class: "narrow-only" }, gettext("Move here")),
            h("span", { class: "visually-hidden" }, ": " + title))),
        members.map(card));
      enableDrag(box, group);
      return box;
    }

    const sortables = [];
    function enableDrag(box, group) {
      if (!window.Sortable) return;  // without the library, tap (or Enter) and "Move selected here" still work
      sortables.push(window.Sortable.create(box, {
        group: "grouping", draggable: ".card-img", sort: false,  // order inside a group means nothing
        // With a finger, press and hold (150 ms) to pick a card up; a quick swipe still scrolls the page.
        delay: 150, delayOnTouchOnly: true, touchStartThreshold: 6,
        fallbackOnBody: true, emptyInsertThreshold: 16, scrollSensitivity: 40,
        ghostClass: "drag-ghost", chosenClass: "drag-chosen", fallbackClass: "drag-finger",
        // While a card is dragged no box may shrink: Sortable takes the card out of its box as soon
        // as it hovers over another, and a box that shrank would move the boxes after it (on a
        // phone, the whole dock) away from under the finger.
        onStart: () => root.querySelectorAll(".zone").forEach((z) => (z.style.minHeight = z.offsetHeight + "px")),
        onMove: (evt) => {
          root.querySelectorAll(".zone.over").forEach((z) => z.classList.remove("over"));
          evt.to.classList.add("over");
        },
        onEnd: () => root.querySelectorAll(".zone").forEach((z) => { z.classList.remove("over"); z.style.minHeight = ""; }),
        // A card dropped into another box: a selected card takes the whole selection with it. The
        // redraw waits for Sortable to finish its own clean-up of the drop.
        onAdd: (evt) => {
          const id = Number(evt.item.dataset.id);
          if (!(id in where)) return;
          const ids = selected.has(id) ? [...selected] : [id];
          setTimeout(() => move(ids, group, "drag"), 0);
        },
      }));
    }

    function compareView() {
      const ids = [...selected];
      return h("div", { class: "compare", id: "compare" },
        h("header", {}, h("strong", {}, fmt(ngettext("Comparing %(n)s image", "Comparing %(n)s images", ids.length), { n: ids.length })),
          h("button", { class: "secondary small", onclick: () => { comparing = false; draw(); } }, gettext("Close"))),
        ids.map((id) => {
          const img = byId[id];
          return h("div", { class: "compare-row" }, h("img", { src: img.url, class: "thumb", alt: fmt(gettext("Image %(id)s"), { id }) }),
            img.heatmap ? h("img", { src: img.heatmap, class: "thumb", alt: gettext("Heatmap over the image") }) : null,
            (img.xfeatures || []).filter((x) => activeX.has(x.index)).map((x) =>
              h("figure", { class: "xfeat" }, contributionChip(x), h("img", { src: x.url, alt: fmt(gettext("Heatmap %(n)s"), { n: x.index + 1 }) }))));
        }));
    }

    let comparing = false;
    function draw() {
      const toolbar = h("div", { class: "toolbar" });
      if (s.stage === "1-Heatmap") {
        toolbar.appendChild(h("button", { class: "secondary small", id: "toggle-all", "aria-pressed": String(showAll), onclick: () => {
          showAll = !showAll; logEvent("toggle_all", { on: showAll }); draw(); } }, showAll ? gettext("Hide all heatmaps") : gettext("Show all heatmaps")));
      }
      if (s.stage === "XNN" && s.images[0] && s.images[0].xfeatures) {
        s.images[0].xfeatures.forEach((x) => {
          toolbar.appendChild(h("label", { class: "xtoggle" }, h("input", { type: "checkbox", checked: activeX.has(x.index), "data-x": x.index,
            onchange: (e) => { if (e.target.checked) activeX.add(x.index); else activeX.delete(x.index);
              logEvent("toggle_xfeature", { feature: x.index, on: e.target.checked }); draw(); } }), fmt(gettext("Heatmap %(n)s"), { n: x.index + 1 })));
        });
      }
      if (s.stage !== "NoVis") {
        toolbar.appendChild(h("button", { class: "secondary small", id: "compare-btn", disabled: selected.size < 2, onclick: () => {
          comparing = true; logEvent("compare", { images: [...selected] }); draw(); } }, gettext("Compare selected")));
      }
      if (s.legend) toolbar.appendChild(legendView(s.legend));
      sortables.splice(0).forEach((x) => x.destroy());
      const groups = [];
      for (let g = 0; g < nGroups; g++) groups.push(zone(g, fmt(gettext("Group %(n)s"), { n: g + 1 })));
      const left = s.images.filter((img) => where[img.id] === -1).length;
      const nUsed = new Set(Object.values(where).filter((g) => g >= 0)).size;
      const fits = nUsed >= (s.min_groups || 1) && nUsed <= s.max_groups;
      const done = h("button", { id: "done-grouping", disabled: left > 0 || !fits, onclick: () => {
        const used = [...new Set(Object.values(where))].sort((a, b) => a - b);
        const assignment = {};
        Object.entries(where).forEach(([id, g]) => (assignment[id] = used.indexOf(g)));
        act("POST", "steps/" + s.step + "/grouping", { assignment });
      } }, left > 0 ? fmt(ngettext("%(n)s image left", "%(n)s images left", left), { n: left })
        : fits ? gettext("Done") : fmt(ngettext("%(used)s of %(n)s group used", "%(used)s of %(n)s groups used", s.min_groups), { used: nUsed, n: s.min_groups }));
      // The dock holds the group boxes and the buttons. Laptop: a column beside the images that
      // stays in view while the page scrolls. Phone: a bar stuck to the bottom of the screen, so
      // the groups are in reach (of a thumb, and of a dragged card) whichever image is on screen.
      const dock = h("div", { class: "dock" }, h("div", { class: "groups" }, groups),
        h("div", { class: "actions" },
          h("button", { class: "secondary", id: "new-group", disabled: nGroups >= s.max_groups, onclick: () => { nGroups += 1; draw(); } }, gettext("+ New group")),
          done));
      root.replaceChildren(...[
        h("p", { class: "stage-text" }, s.instruction),
        s.group_rule ? h("p", { class: "group-rule", id: "group-rule" }, s.group_rule) : null,
        toolbar,
        comparing && selected.size ? compareView() : null,
        h("div", { class: "zones" }, zone(-1, gettext("Not grouped yet")), dock)].filter(Boolean));
    }
    draw();
    return [root];
  }

  function render(s, seq) {
    if (seq !== undefined) {
      if (seq < shown) return;
      shown = seq;
    }
    state = s;
    setProgress(s);
    const view = views[s.kind] || (flow && flow.views[s.kind]) || views.unavailable;
    app.replaceChildren(...view(s));
    const withdraw = flow && flow.withdrawControl(s);
    // Under the step; above the grouping board, whose group boxes stay stuck to the bottom of a phone's screen.
    if (withdraw && s.kind === "grouping") { withdraw.classList.add("top"); app.prepend(withdraw); }
    else if (withdraw) app.appendChild(withdraw);
    if (flow) flow.update(s);
    app.dataset.kind = s.kind;
    app.dataset.step = s.step === undefined ? "" : String(s.step);
    if (s.kind === "trial" && s.answered) logEvent("feedback_shown", { trial: s.trial });
    focusNewContent(s);
  }

  // After each step the focus moves to the new content (WCAG 2.4.3): its heading or first line
  // (made focusable for this only), so a screen reader reads the step from its start and Tab goes
  // on to its controls; the trial's feedback starts at the verdict.
  function focusNewContent(s) {
    const target = (s.kind === "trial" && s.answered && app.querySelector("#verdict"))
      || app.querySelector("h2, .prompt, .stage-text, p");
    if (!target) return;
    if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
    target.focus({ preventScroll: true });
    if (window.scrollY > target.getBoundingClientRect().top + window.scrollY) target.scrollIntoView({ block: "start" });
  }

  // One polite live region for what changes without a new step (the grouping board's moves and
  // selections, the time warning): screen readers say it once.
  const announcer = h("div", { id: "announce", class: "visually-hidden", role: "status", "aria-live": "polite" });
  document.body.appendChild(announcer);
  function announce(text) {
    announcer.textContent = "";
    setTimeout(() => { announcer.textContent = text; }, 50);
  }

  // Keep the browser's back button inside the page: it simply shows the current step again.
  history.replaceState({ study: true }, "");
  history.pushState({ study: true }, "");
  window.addEventListener("popstate", () => { history.pushState({ study: true }, ""); load(); });
  flow = window.StudyFlow({
    h, gettext, ngettext, fmt, fill, API, csrf, call, act, showError, code: window.STUDY.code,
    getState: () => state, render, reload: load, announce,
  });
  load();
})();
