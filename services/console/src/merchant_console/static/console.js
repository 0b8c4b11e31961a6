// The console's only script: live regions refreshed on server-sent events, the rule form's
// check-as-you-type (the API's own field errors, or the preview), and confirmations.
"use strict";

// Live regions (data-live: the fragment's URL, data-live-topics: what it shows) are
// refreshed when the console's server-sent events (/console/events) say a topic changed.
function refresh(el) {
  if (document.hidden) { el.dataset.stale = "1"; return; }
  // Never replace a region the user is working in (focus or an open selection).
  if (el.contains(document.activeElement) && document.activeElement !== document.body) { el.dataset.stale = "1"; return; }
  delete el.dataset.stale;
  fetch(el.dataset.live, { headers: { "X-Console-Fragment": "1" }, credentials: "same-origin" })
    .then((answer) => {
      if (answer.status === 401) { window.location.reload(); return null; }
      return answer.ok ? answer.text() : null;
    })
    .then((html) => {
      if (html === null || html === undefined) return;
      el.innerHTML = html;
      const root = document.documentElement.dataset;
      root.liveRefreshes = String(parseInt(root.liveRefreshes || "0", 10) + 1);
    })
    .catch(() => {});
}

function startLive() {
  const regions = Array.from(document.querySelectorAll("[data-live]"));
  if (!regions.length || !window.EventSource) return;
  const root = document.documentElement.dataset;
  const source = new EventSource(document.body.dataset.events);
  source.addEventListener("ready", () => { root.live = "open"; });
  source.addEventListener("signed-out", () => { source.close(); window.location.reload(); });
  source.onerror = () => {
    root.live = "reconnecting";
    // Closed for good (the session ended: the stream answered 401): sign in again.
    if (source.readyState === EventSource.CLOSED) window.location.reload();
  };
  for (const topic of ["pushes", "deliveries", "stock", "oversells", "channels"]) {
    source.addEventListener(topic, () => {
      regions
        .filter((el) => (el.dataset.liveTopics || "").split(" ").includes(topic))
        .forEach(refresh);
    });
  }
  const catchUp = () => regions.filter((el) => el.dataset.stale).forEach(refresh);
  document.addEventListener("visibilitychange", catchUp);
  document.addEventListener("focusout", () => window.setTimeout(catchUp, 0));
}

function startRuleForm() {
  const form = document.getElementById("rule-form");
  if (!form) return;
  const target = document.getElementById("rule-check");
  let timer = null;
  let sequence = 0;
  const check = () => {
    const mine = ++sequence;
    fetch(form.dataset.check, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-Console-Fragment": "1" },
      credentials: "same-origin",
    })
      .then((answer) => (answer.ok ? answer.text() : null))
      .then((html) => {
        if (html === null || mine !== sequence) return;
        target.innerHTML = html;
        const wrong = new Set(Array.from(target.querySelectorAll("[data-field]")).map((li) => li.dataset.field));
        form.querySelectorAll("input, select, textarea").forEach((input) => {
          const name = input.name.replace(/^condition_/, "condition.").replace(/^action_/, "action.");
          const bad = Array.from(wrong).some((field) => field === name || field.startsWith(name + ".") || field === input.name);
          if (bad) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
        });
      })
      .catch(() => {});
  };
  const later = () => { window.clearTimeout(timer); timer = window.setTimeout(check, 350); };
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  document.getElementById("preview-button").addEventListener("click", check);
}

function startConfirmations() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  startLive();
  startRuleForm();
  startConfirmations();
});
