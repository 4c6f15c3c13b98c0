// The update-payment-method page: confirm a SetupIntent with the processor's fields,
// then ask the server to save the method (and retry what is owed).
(function () {
  "use strict";
  const root = document.getElementById("update");
  const form = document.getElementById("pm-form");
  if (!root || !form) return;
  const stripe = window.Stripe(root.dataset.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  const message = document.getElementById("message");
  const button = document.getElementById("save");
  const base = "/api/payment-method/" + encodeURIComponent(root.dataset.token);
  const headers = { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf };

  async function post(path) {
    const r = await fetch(base + path, { method: "POST", headers: headers, body: "{}" });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    return { status: r.status, data: data };
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    button.disabled = true;
    message.textContent = "Saving…";
    try {
      const started = await post("");
      if (started.status !== 200) throw new Error((started.data && started.data.detail) || "Could not start.");
      const confirmed = await stripe.confirmCardSetup(started.data.payment.client_secret, {
        payment_method: { card: card },
      });
      if (confirmed.error) throw new Error(confirmed.error.message || "The card was not accepted.");
      const done = await post("/complete");
      if (done.status !== 200) throw new Error((done.data && done.data.detail) || "Could not save the card.");
      const retry = done.data.retry;
      if (!retry) message.textContent = "Your payment method was updated.";
      else if (retry.status === "succeeded") message.textContent = "Your payment method was updated and the amount due was paid.";
      else message.textContent = "Your payment method was saved, but the payment failed. Try another card.";
      document.getElementById("status").textContent = retry && retry.status === "succeeded" ? "active" : document.getElementById("status").textContent;
    } catch (err) {
      message.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
})();
