// Checkout page: works with real Stripe.js and with the test processor's stand-in.
// Every number shown comes from the server; this script only collects input,
// shows errors next to their field, and walks the processor's confirmation steps.
(function () {
  "use strict";
  const root = document.getElementById("checkout");
  if (!root) return;
  const token = root.dataset.token;
  const csrf = root.dataset.csrf;
  const form = document.getElementById("pay-form");
  const button = document.getElementById("pay-button");
  const formError = document.getElementById("form-error");
  const stripe = window.Stripe(root.dataset.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  labelPlainCardInputs();

  // Whether the buyer has typed into the card fields yet: Stripe.js passes
  // {empty, complete, error} to "change" handlers, the stand-in passes nothing.
  let cardState = null;
  card.on("change", function (event) { cardState = event || {}; });

  function focusCard() {
    if (typeof card.focus === "function") { card.focus(); return; }
    const first = document.querySelector("#card-element input");
    if (first) first.focus();
  }

  // Real Stripe.js renders its card fields, labelled, in its own frame. The test
  // processor's stand-in renders plain inputs with only a placeholder: give them
  // names, autofill hints and a numeric keyboard, so the page is accessible with both.
  function labelPlainCardInputs() {
    const hints = {
      number: ["Card number", "cc-number"],
      exp_month: ["Expiry month (MM)", "cc-exp-month"],
      exp_year: ["Expiry year (YY)", "cc-exp-year"],
      cvc: ["Security code (CVC)", "cc-csc"],
      postal_code: ["Postal code", "postal-code"],
    };
    document.querySelectorAll("#card-element input[placeholder]").forEach(function (input) {
      const hint = hints[input.getAttribute("placeholder")];
      if (!hint) return;
      if (!input.hasAttribute("aria-label")) input.setAttribute("aria-label", hint[0]);
      input.setAttribute("autocomplete", hint[1]);
      if (hint[1] !== "postal-code") input.setAttribute("inputmode", "numeric");
    });
  }

  // Bank debit (SEPA), when the checkout offers it: an IBAN field instead of the card.
  const ibanField = document.getElementById("iban-field");
  const cardField = document.getElementById("card-element").closest(".field");
  function chosenMethod() {
    const picked = document.querySelector('input[name="payment-method"]:checked');
    return picked ? picked.value : "card";
  }
  function showMethod() {
    const bank = chosenMethod() === "sepa_debit";
    if (ibanField) ibanField.hidden = !bank;
    cardField.style.display = bank ? "none" : "";
  }
  document.querySelectorAll('input[name="payment-method"]').forEach(function (input) {
    input.addEventListener("change", showMethod);
  });
  showMethod();
  function iban() {
    const input = document.getElementById("iban");
    return input ? input.value.replace(/\s+/g, "").toUpperCase() : "";
  }

  function clearErrors() {
    formError.textContent = "";
    document.querySelectorAll("[data-error-for]").forEach(function (el) { el.textContent = ""; });
    document.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
  }

  function showFieldErrors(errors) {
    let shown = false;
    (errors || []).forEach(function (err) {
      const slot = document.querySelector('[data-error-for="' + err.field + '"]');
      if (slot) {
        slot.textContent = err.message;
        const input = document.getElementById(slot.id.replace(/^error-/, ""));
        if (input) input.setAttribute("aria-invalid", "true");
        shown = true;
      }
    });
    return shown;
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      credentials: "same-origin",
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    return { status: response.status, data: data };
  }

  function contact() {
    const value = function (id) { return document.getElementById(id).value.trim(); };
    return {
      email: value("contact-email"),
      firstname: value("contact-firstname") || null,
      lastname: value("contact-lastname") || null,
    };
  }

  function done(result) {
    if (result.redirect_url) { window.location.assign(result.redirect_url); return; }
    form.hidden = true;
    const confirmation = document.getElementById("confirmation");
    confirmation.hidden = false;
    confirmation.focus();
  }

  async function complete() {
    const r = await post("/api/checkout/" + token + "/complete", {});
    if (r.status === 200 && r.data.status === "complete") { done(r.data); return; }
    if (r.status === 402 && r.data.status === "requires_action") {
      const auth = await stripe.confirmCardPayment(r.data.client_secret);
      if (auth.error) {
        formError.textContent = auth.error.message || "The card could not be authenticated. Try another card.";
        return;
      }
      await complete();
      return;
    }
    if (r.status === 402 && r.data.status === "declined") {
      formError.textContent = (r.data.message || "The payment was declined.") + " You can try another card.";
      return;
    }
    formError.textContent = r.data.detail || "The payment could not be completed. Please try again.";
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    clearErrors();
    const method = chosenMethod();
    if (method === "sepa_debit" && !iban()) {
      document.getElementById("error-iban").textContent = "Enter your IBAN.";
      document.getElementById("iban").focus();
      return;
    }
    if (method === "card" && (!cardState || cardState.empty)) {
      document.getElementById("error-card").textContent = "Enter your card details.";
      focusCard();
      return;
    }
    button.disabled = true;
    try {
      const details = contact();
      const r = await post("/api/checkout/" + token, { contact: details, items: [] });
      if (r.status !== 200) {
        if (!showFieldErrors(r.data.errors)) {
          formError.textContent = r.data.detail || "Please check the form.";
        }
        return;
      }
      const name = [details.firstname, details.lastname].filter(Boolean).join(" ");
      const billing = { email: details.email };
      if (name) billing.name = name;
      const setup = method === "sepa_debit"
        ? await stripe.confirmSepaDebitSetup(r.data.payment.client_secret, {
          payment_method: { sepa_debit: { iban: iban() }, billing_details: billing },
        })
        : await stripe.confirmCardSetup(r.data.payment.client_secret, {
          payment_method: { card: card, billing_details: billing },
        });
      if (setup.error && method === "sepa_debit") {
        document.getElementById("error-iban").textContent =
          (setup.error.message || "The bank account was not accepted.") + " Check the IBAN or pay another way.";
        return;
      }
      if (setup.error) {
        document.getElementById("error-card").textContent =
          (setup.error.message || "The card was not accepted.") + " You can try another card.";
        return;
      }
      await complete();
    } catch (err) {
      formError.textContent = "Something went wrong. Please try again.";
    } finally {
      button.disabled = false;
    }
  });
})();
