// The console's only script, and an optional one: every page works without it.
// - a button with data-confirm asks first (bulk labels touch many windows);
// - pending labels count down to their send, and the page reloads when one is sent (the Undo button is gone then).
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) event.preventDefault();
});
for (const pending of document.querySelectorAll(".pending-label")) {
  const due = Number(pending.dataset.due);
  const shown = pending.querySelector(".countdown");
  const started = Date.now();
  const left0 = Number(shown.textContent) * 1000;
  const tick = () => {
    const left = Math.max(0, left0 - (Date.now() - started));
    shown.textContent = String(Math.ceil(left / 1000));
    if (left <= 0) { setTimeout(() => window.location.reload(), 1500); return; }
    setTimeout(tick, 500);
  };
  if (due) tick();
}
