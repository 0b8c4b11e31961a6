// The console's only script: live regions that refresh themselves, the rule form's
// check-as-you-type (the API's own field errors, or the preview), and confirmations.
"use strict";

function refresh(el) {
  if (document.hidden) return;
  // Never replace a region the user is working in (focus or an open selection).
  if (el.contains(document.activeElement) && document.activeElement !== document.body) return;
  fetch(el.dataset.poll, { headers: { "X-Console-Fragment": "1" }, credentials: "same-origin" })
    .then((answer) => {
      if (answer.status === 401) { window.location.reload(); return null; }
      return answer.ok ? answer.text() : null;
    })
    .then((html) => { if (html !== null && html !== undefined) el.innerHTML = html; })
    .catch(() => {});
}

function startPolling() {
  document.querySelectorAll("[data-poll]").forEach((el) => {
    const every = parseInt(el.dataset.interval || "2000", 10);
    window.setInterval(() => refresh(el), every);
  });
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
  startPolling();
  startRuleForm();
  startConfirmations();
});
