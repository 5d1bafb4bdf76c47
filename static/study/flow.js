/* The participant flow around the steps (study.js renders the steps themselves):
   the progress bar, the "Withdraw and delete my data" control, the time-limit warning, the
   test-run banner, the quiz, catch-item and exit views, and the interaction-event queue.
   The server decides everything (where the run is, whether time is up, which exit); this only
   shows it. */
(function () {
  "use strict";

  window.StudyFlow = function (ctx) {
    const { h, gettext, fmt, fill } = ctx;

    // ---- interaction events: batched, kept across a reload, retried, flushed when the page hides.
    // They go to the API's "events" scope, which has its own rate limit: they never use up the
    // participant's requests, and a batch the server did not take is sent again.
    const storeKey = "study-events:" + ctx.code;
    let queue = [];
    try { queue = JSON.parse(sessionStorage.getItem(storeKey) || "[]"); } catch (e) { queue = []; }
    let sending = false;
    let retryMs = 1000;
    let timer = null;
    function save() { try { sessionStorage.setItem(storeKey, JSON.stringify(queue)); } catch (e) { /* private mode */ } }
    function schedule(ms) {
      if (timer) return;
      timer = setTimeout(() => { timer = null; flush(false); }, ms);
    }
    function push(kind, payload, step) {
      const s = ctx.getState();
      if (!s || s.step === undefined || s.kind === "exit") return;
      queue.push({ kind, payload: payload || {}, step: step === undefined || step === null ? s.step : step,
        t: Math.round(performance.now()) });
      save();
      schedule(queue.length >= 20 ? 0 : 3000);
    }
    async function flush(leaving) {
      if (sending || !queue.length) return;
      sending = true;
      const batch = queue.slice(0, 50);
      try {
        const r = await fetch(ctx.API + "events", {
          method: "POST", credentials: "same-origin", keepalive: !!leaving,
          headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": ctx.csrf() },
          body: JSON.stringify({ events: batch }),
        });
        const final = r.ok || (r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429);
        if (final) {  // saved, or refused for good (a malformed batch, a run withdrawn): not sent again
          queue = queue.slice(batch.length);
          save();
          retryMs = 1000;
          if (queue.length) schedule(0);
        } else {
          schedule(retryMs);
          retryMs = Math.min(retryMs * 2, 30000);
        }
      } catch (e) {
        schedule(retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      } finally {
        sending = false;
      }
    }
    function drop() { queue = []; save(); }

    // Time with the tab hidden: the "visible" event carries the hidden spell's length and whether
    // the trial's answer had been saved when it began (the export subtracts it).
    let hiddenAt = null;
    let hiddenStep = null;
    let hiddenAnswered = false;
    document.addEventListener("visibilitychange", () => {
      const s = ctx.getState();
      if (document.hidden) {
        hiddenAt = performance.now();
        hiddenStep = s ? s.step : null;
        hiddenAnswered = !!(s && s.kind === "trial" && s.answered);
        push("hidden", { answered: hiddenAnswered }, hiddenStep);
        flush(true);
      } else if (hiddenAt !== null) {
        push("visible", { hidden_ms: Math.round(performance.now() - hiddenAt), answered: hiddenAnswered }, hiddenStep);
        hiddenAt = null;
      }
    });
    window.addEventListener("pagehide", () => flush(true));

    // Whether a morph animation played to its end: one loop (animation_ms, from the file) of
    // visible time after it loaded; a replay starts the count again.
    function watchAnimation(img, ms, step, trial) {
      let elapsed = 0;
      let last = null;
      let ended = false;
      let tick = null;
      function start() {
        elapsed = 0; ended = false; last = performance.now();
        if (tick) clearInterval(tick);
        tick = setInterval(() => {
          const now = performance.now();
          if (!document.hidden) elapsed += now - last;
          last = now;
          if (!img.isConnected) { clearInterval(tick); return; }
          if (!ended && elapsed >= ms) {
            ended = true;
            clearInterval(tick);
            push("animation_end", { trial, ms }, step);
          }
        }, 100);
      }
      if (ms) img.addEventListener("load", start);
      return () => { if (ms) start(); };
    }

    // ---- around every step ----
    const bar = document.getElementById("progressbar");
    const banner = document.getElementById("banner");
    const timeBox = document.getElementById("time-left");
    let countdown = null;

    function update(s) {
      const p = s.progress;
      if (bar) {
        const shown = !!p && s.kind !== "exit";
        bar.hidden = !shown;
        if (shown) {
          const pct = p.total ? Math.round((100 * p.done) / p.total) : 0;
          bar.setAttribute("aria-valuenow", String(pct));
          bar.setAttribute("aria-valuetext", fmt(gettext("Step %(n)s of %(total)s"), { n: Math.min(p.done + 1, p.total), total: p.total }));
          bar.firstElementChild.style.width = pct + "%";
        }
      }
      if (banner) {
        banner.hidden = !s.test_run;
        banner.textContent = s.test_run ? gettext("Test run: this is a preview or pilot run. It is not counted and is left out of the analysis and the exports.") : "";
      }
      if (countdown) { clearInterval(countdown); countdown = null; }
      if (timeBox) {
        timeBox.hidden = true;
        const limit = s.time_limit;
        if (limit && typeof limit.seconds_left === "number") {
          const ends = performance.now() + limit.seconds_left * 1000;
          const step = s.step;
          // The countdown's text (role timer, not read out each second) and, while the limit
          // allows it, a button for more time (WCAG 2.2.1); the warning is announced once.
          const text = h("span", { id: "time-left-text" });
          const more = limit.extensions_left > 0 ? h("button", { class: "secondary small", id: "more-time", onclick: moreTime }, gettext("More time")) : null;
          timeBox.replaceChildren(...[text, more].filter(Boolean));
          let warned = false;
          const show = () => {
            const left = Math.max(0, Math.round((ends - performance.now()) / 1000));
            if (left <= limit.warn_seconds) {
              timeBox.hidden = false;
              const what = limit.scope === "step" ? gettext("for this page") : gettext("for the whole study");
              text.textContent = left > 0
                ? fmt(gettext("Time left %(what)s: %(m)s:%(s)s"), { what, m: Math.floor(left / 60), s: String(left % 60).padStart(2, "0") })
                : gettext("The time is up.");
              if (!warned && left > 0) {
                warned = true;
                ctx.announce(text.textContent + (more ? " " + gettext("Choose More time if you need it.") : ""));
              }
            }
            if (left <= 0) {  // the server decides: ask it where the run is now
              clearInterval(countdown); countdown = null;
              const current = ctx.getState();
              if (current && current.step === step) ctx.reload();
            }
          };
          show();
          countdown = setInterval(show, 1000);
        }
      }
    }

    // More time: the server extends the limit that ends first (if the study allows) and answers
    // with the state, whose new deadline restarts the countdown.
    async function moreTime() {
      const button = document.getElementById("more-time");
      if (button) button.disabled = true;
      const r = await ctx.call("POST", "time/extend", {});
      if (r.ok) {
        ctx.render(r.data, r.seq);
        ctx.announce(gettext("You have more time."));
      } else {
        if (r.data && r.data.state) ctx.render(r.data.state, r.seq);
        ctx.showError((r.data && r.data.detail) || gettext("Could not add more time. Please try again."));
      }
    }

    // The withdraw control under every step of a run, with a confirmation.
    function withdrawControl(s) {
      if (s.step === undefined || s.kind === "exit") return null;
      const box = h("div", { class: "withdraw", id: "withdraw" });
      function closed() {
        box.replaceChildren(h("button", { class: "link", id: "withdraw-open", onclick: opened }, gettext("Withdraw and delete my data")));
      }
      function opened() {
        const yes = h("button", { class: "danger", id: "withdraw-confirm", onclick: async () => {
          yes.disabled = true;
          const r = await ctx.call("POST", "withdraw", { confirm: true });
          if (r.ok && r.data.state) { drop(); ctx.render(r.data.state, r.seq); } else { yes.disabled = false; ctx.showError((r.data && r.data.detail) || gettext("Could not withdraw. Please try again.")); }
        } }, gettext("Yes, withdraw and delete my data"));
        box.replaceChildren(h("div", { class: "confirm", role: "alertdialog", "aria-labelledby": "withdraw-q" },
          h("p", { id: "withdraw-q" }, gettext("Withdraw from the study? Everything you have answered will be deleted. This cannot be undone.")),
          h("div", { class: "actions" }, h("button", { class: "secondary", id: "withdraw-cancel", onclick: closed }, gettext("Cancel")), yes)));
        yes.focus();
      }
      closed();
      return box;
    }

    function choices(name, options, labelledBy) {
      return h("div", { class: "scale", role: "radiogroup", "aria-labelledby": labelledBy },
        options.map((o, i) => h("label", {}, h("input", { type: "radio", name, value: i }), typeof o === "string" ? o : o.label)));
    }

    const OUTCOME_TITLES = {
      completed: gettext("Thank you!"),
      no_consent: gettext("You chose not to take part"),
      full: gettext("This study is full"),
      failed_checks: gettext("The study has ended"),
      withdrew: gettext("You have withdrawn"),
      timed_out: gettext("The time is up"),
      ended: gettext("The study has ended"),
    };
    const OUTCOME_TEXTS = {
      no_consent: gettext("Thank you for your interest. Nothing about you has been stored."),
      full: gettext("All places in this study have been taken. Thank you for your interest."),
      failed_checks: gettext("Thank you for your time. The answers to the comprehension questions were not all correct, so the study ends here."),
      withdrew: gettext("Your data has been deleted. Thank you for your time."),
      timed_out: gettext("The time limit of this study has passed, so it ends here. Thank you for your time."),
      ended: gettext("This run has been ended by the researchers."),
    };

    const views = {
      quiz(s) {
        const form = h("form", { class: "questions", id: "quiz", onsubmit: (e) => e.preventDefault() });
        s.questions.forEach((q, qi) => {
          form.appendChild(h("fieldset", { class: "question" }, h("legend", { id: "quiz-" + qi + "-label" }, q.label),
            choices("quiz-" + qi, q.options, "quiz-" + qi + "-label")));
        });
        const submit = h("button", { id: "submit-quiz", onclick: () => {
          const answers = {};
          for (let qi = 0; qi < s.questions.length; qi += 1) {
            const picked = form.querySelector('input[name="quiz-' + qi + '"]:checked');
            if (!picked) { ctx.showError(fmt(gettext("Please answer: %(question)s"), { question: s.questions[qi].label })); return; }
            answers[s.questions[qi].key] = Number(picked.value);
          }
          ctx.act("POST", "steps/" + s.step + "/check", { answers });
        } }, gettext("Check my answers"));
        const parts = [h("h2", {}, s.title)];
        if (s.retry) {
          parts.push(h("p", { class: "notice", id: "quiz-retry", role: "status" },
            fmt(ctx.ngettext("Not all answers were right. Read the instructions again; you have %(n)s try left.",
              "Not all answers were right. Read the instructions again; you have %(n)s tries left.", s.attempts_left), { n: s.attempts_left })));
        }
        parts.push(h("details", { class: "reread", open: s.retry ? "" : false },
          h("summary", {}, gettext("The instructions again")), h("ol", { class: "steps" }, (s.instructions || []).map((t) => h("li", {}, t)))));
        parts.push(form, h("div", { class: "actions" }, submit));
        return parts;
      },
      catch(s) {
        const parts = [h("p", { class: "prompt", id: "catch-prompt" }, s.prompt)];
        if (s.image_url) parts.push(h("img", { class: "stimulus", src: s.image_url, alt: gettext("Picture for this question"), width: 224, height: 224 }));
        parts.push(choices("catch", s.options, "catch-prompt"));
        parts.push(h("div", { class: "actions" }, h("button", { id: "submit-catch", onclick: () => {
          const picked = document.querySelector('input[name="catch"]:checked');
          if (!picked) { ctx.showError(gettext("Choose one of the answers first.")); return; }
          ctx.act("POST", "steps/" + s.step + "/check", { answers: { catch: Number(s.options[Number(picked.value)].value) } });
        } }, gettext("Continue"))));
        return parts;
      },
      exit(s) {
        const e = s.exit || {};
        // A run that ended keeps its last events (sent now); one that never was, or was deleted, has none.
        if (["withdrew", "no_consent", "full"].includes(e.outcome)) drop(); else flush(true);
        const parts = [h("h2", { id: "exit-title", "data-outcome": e.outcome || "" }, OUTCOME_TITLES[e.outcome] || OUTCOME_TITLES.ended),
          h("p", {}, e.text || OUTCOME_TEXTS[e.outcome] || "")];
        if (e.code) parts.push(h("p", {}, fill(gettext("Your completion code: %(code)s"), { code: h("span", { class: "code", id: "completion-code" }, e.code) })));
        if (e.redirect_url) {
          parts.push(h("p", {}, h("a", { href: e.redirect_url, id: "redirect", class: "button" }, gettext("Return to Prolific"))));
          setTimeout(() => { window.location.assign(e.redirect_url); }, 2500);
        }
        return parts;
      },
    };

    return { push, flush, update, withdrawControl, watchAnimation, views };
  };
})();
