// Checkout page: works with real Stripe.js and with the test processor's stand-in.
// Every number shown comes from the server (already formatted): this script collects
// the buyer's choices, asks the server for the summary when they change, shows errors
// next to their field, and walks the processor's confirmation steps.
(function () {
  "use strict";
  const root = document.getElementById("checkout");
  if (!root) return;
  const token = root.dataset.token;
  const csrf = root.dataset.csrf;
  const exponent = parseInt(root.dataset.exponent, 10) || 0;
  const base = "/api/checkout/" + token;
  const form = document.getElementById("pay-form");
  const button = document.getElementById("pay-button");
  const formError = document.getElementById("form-error");
  const summaryError = document.getElementById("summary-error");
  const itemRows = Array.prototype.slice.call(document.querySelectorAll("[data-item]"));
  const discountInput = document.getElementById("discount-code");
  const discountStatus = document.getElementById("discount-status");
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

  // -- errors next to their field --------------------------------------------------------
  // An API field such as items[0].quantity, contact.phone or billing_address.postal_code
  // is shown in the slot data-error-for="<field>" (or its nearest parent's slot); the
  // slot's id is "error-" + the id of its control.
  function slotFor(field) {
    let name = String(field || "");
    while (name) {
      const slot = document.querySelector('[data-error-for="' + CSS.escape(name) + '"]');
      if (slot) return slot;
      const cut = Math.max(name.lastIndexOf("."), name.lastIndexOf("["));
      if (cut <= 0) break;
      name = name.slice(0, cut);
    }
    return null;
  }

  function controlOf(slot) {
    return slot.id ? document.getElementById(slot.id.replace(/^error-/, "")) : null;
  }

  // The server's messages follow the field's name ("is required"); say which field.
  function sentence(slot, message) {
    let text = String(message || "").replace(/^Value error, /, "");
    if (/^(is|are|must|should)\b/.test(text) && slot.dataset.label) text = slot.dataset.label + " " + text;
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?]$/.test(text) ? text : text + ".";
  }

  function clearErrors(matches) {
    document.querySelectorAll("[data-error-for]").forEach(function (slot) {
      if (matches && !matches(slot.dataset.errorFor)) return;
      slot.textContent = "";
      const control = controlOf(slot);
      if (control) control.removeAttribute("aria-invalid");
    });
  }

  // Shows each error beside its field; returns the errors no slot could take. With
  // ``focus``, the first control in error (in page order) gets the focus.
  function showErrors(errors, focus) {
    const unplaced = [];
    const controls = [];
    (errors || []).forEach(function (err) {
      const slot = slotFor(err.field);
      if (!slot) { unplaced.push(err); return; }
      const text = sentence(slot, err.message);
      slot.textContent = slot.textContent ? slot.textContent + " " + text : text;
      const control = controlOf(slot);
      if (control) {
        if (/^(INPUT|SELECT|TEXTAREA)$/.test(control.tagName)) control.setAttribute("aria-invalid", "true");
        controls.push(control);
      } else {
        controls.push(slot);
      }
    });
    if (focus && controls.length) {
      controls.sort(function (a, b) {
        return a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1;
      });
      focusControl(controls[0]);
    }
    return unplaced;
  }

  function focusControl(el) {
    if (el.dataset.errorFor === "card") { focusCard(); return; }
    if (el.tagName === "FIELDSET") {
      const inner = el.querySelector("input, select");
      if (inner) { inner.focus(); return; }
    }
    if (!/^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(el.tagName)) el.setAttribute("tabindex", "-1");
    el.focus();
  }

  // An error goes once the buyer changes its field.
  root.addEventListener("input", function (event) {
    const target = event.target;
    const slot = target.id ? document.getElementById("error-" + target.id) : null;
    if (slot && slot.textContent) {
      slot.textContent = "";
      target.removeAttribute("aria-invalid");
    }
  });

  const isChoiceField = function (field) { return /^(items|discount_code)\b/.test(field); };

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

  // -- the buyer's choices ---------------------------------------------------------------
  // Major units as typed ("12.50", "12,5") to minor units, exactly: digits only, no
  // floating point. Bounds are the server's to check.
  function toMinorUnits(text) {
    const typed = String(text).replace(/[\s\u00a0\u202f]/g, "");
    if (!typed) return { error: "Enter an amount." };
    const match = /^(\d+)(?:[.,](\d*))?$/.exec(typed);
    if (!match) {
      return { error: exponent ? "Enter an amount in digits, such as 12.50." : "Enter a whole amount in digits." };
    }
    const fraction = match[2] || "";
    if (fraction.length > exponent) {
      return { error: exponent ? "Use at most " + exponent + " decimals." : "Enter a whole amount, without decimals." };
    }
    let minor = (match[1] + fraction.padEnd(exponent, "0")).replace(/^0+(?=\d)/, "");
    if (minor.length > 12) return { error: "That amount is too large." };
    const value = parseInt(minor, 10);
    if (value < 1) return { error: "Enter an amount above zero." };
    return { value: value };
  }

  function toQuantity(text) {
    const typed = String(text).trim();
    return /^\d{1,6}$/.test(typed) ? parseInt(typed, 10) : null;
  }

  // One choice per line item, in the page's order (so items[i] in an error is row i).
  // ``initial``: the choices as rendered (what the first summary was computed for).
  function readItems(errors, initial) {
    return itemRows.map(function (row, index) {
      const choice = { line_item_id: row.dataset.lineItemId, selected: true };
      const check = row.querySelector("[data-item-selected]");
      if (check) choice.selected = initial ? check.defaultChecked : check.checked;
      if (!choice.selected) return choice;
      const quantity = row.querySelector("[data-item-quantity]");
      if (quantity) {
        const n = toQuantity(initial ? quantity.defaultValue : quantity.value);
        if (n === null) errors.push({ field: "items[" + index + "].quantity", message: "Enter a whole number." });
        else choice.quantity = n;
      }
      const amount = row.querySelector("[data-item-amount]");
      if (amount) {
        const parsed = toMinorUnits(initial ? amount.defaultValue : amount.value);
        if (parsed.error) errors.push({ field: "items[" + index + "].amount", message: parsed.error });
        else choice.amount = parsed.value;
      }
      return choice;
    });
  }

  // -- the live summary ------------------------------------------------------------------
  let appliedCode = null;
  let shownKey = JSON.stringify({ items: readItems([], true) });
  let timer = null;
  let queue = Promise.resolve({ ok: true, changed: false });

  function render(display) {
    itemRows.forEach(function (row) {
      const amount = display.lines[row.dataset.lineItemId];
      row.querySelector("[data-line-amount]").textContent = amount || "Not added";
      row.classList.toggle("is-off", !amount);
    });
    document.querySelector('[data-summary="subtotal_due_now"]').textContent = display.subtotal_due_now;
    const discounts = document.getElementById("summary-discounts");
    discounts.replaceChildren.apply(discounts, display.discounts_due_now.map(function (d) {
      const row = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = d.name;
      dd.textContent = d.amount;
      row.append(dt, dd);
      return row;
    }));
    document.getElementById("summary-tax").hidden = !display.tax_due_now;
    document.querySelector('[data-summary="tax_due_now"]').textContent = display.tax_due_now || "";
    document.querySelector('[data-summary="total_due_now"]').textContent = display.total_due_now;
    const later = document.getElementById("later-payments");
    later.replaceChildren.apply(later, display.later_payments.map(function (p) {
      const li = document.createElement("li");
      const when = document.createElement("span");
      const amount = document.createElement("span");
      when.textContent = p.date;
      amount.textContent = p.amount;
      li.append(when, " ", amount);
      return li;
    }));
    document.getElementById("later").hidden = !display.later_payments.length;
    document.getElementById("later-more").hidden = !display.later_more;
    document.querySelector("[data-later-more]").textContent = String(display.later_more);
    const changed = button.textContent !== display.pay_label;
    button.textContent = display.pay_label;
    return changed;
  }

  function setStale(stale) {
    root.classList.toggle("is-updating", stale);
    document.getElementById("summary").setAttribute("aria-busy", stale ? "true" : "false");
  }

  function showApplied() {
    if (discountStatus) discountStatus.textContent = appliedCode ? "Code " + appliedCode + " applied." : "";
  }

  // Prices the current choices on the server and shows the answer. ``code``: the
  // discount code to try (default: the one applied). Calls run one after another.
  function refresh(options) {
    const opts = options || {};
    queue = queue.then(function () { return priceChoices(opts); }, function () { return priceChoices(opts); });
    return queue;
  }

  async function priceChoices(opts) {
    const errors = [];
    const items = readItems(errors, false);
    const code = opts.code !== undefined ? opts.code : appliedCode;
    clearErrors(isChoiceField);
    summaryError.textContent = "";
    if (errors.length) {
      showErrors(errors, opts.focus);
      setStale(true);
      return { ok: false };
    }
    const body = { items: items };
    if (code) body.discount_code = code;
    const key = JSON.stringify(body);
    if (key === shownKey) {
      appliedCode = code || null;
      showApplied();
      setStale(false);
      return { ok: true, changed: false };
    }
    setStale(true);
    try {
      const r = await post(base + "/summary", body);
      if (r.status === 200) {
        const changed = render(r.data.display);
        shownKey = key;
        appliedCode = code || null;
        showApplied();
        setStale(false);
        return { ok: true, changed: changed };
      }
      const rest = showErrors(r.data.errors, opts.focus);
      if (rest.length || !r.data.errors) summaryError.textContent = r.data.detail || "The total could not be updated.";
      return { ok: false };
    } catch (e) {
      summaryError.textContent = "The total could not be updated. Check your connection and try again.";
      return { ok: false };
    }
  }

  function later(delay) {
    clearTimeout(timer);
    timer = setTimeout(function () { timer = null; refresh(); }, delay);
  }

  // Quantity steppers: −/+ within the bounds (aria-disabled at a bound, so the focus
  // stays on the button), and the number input's own arrow keys.
  function stepperState(input) {
    const row = input.closest("[data-item]");
    const n = toQuantity(input.value);
    row.querySelectorAll("[data-step]").forEach(function (stepButton) {
      const atBound = n !== null && (stepButton.dataset.step === "-1" ? n <= +input.min : n >= +input.max);
      stepButton.setAttribute("aria-disabled", atBound ? "true" : "false");
    });
  }

  function selectRow(row) {
    const check = row.querySelector("[data-item-selected]");
    if (check && !check.checked) check.checked = true;
  }

  itemRows.forEach(function (row) {
    const check = row.querySelector("[data-item-selected]");
    if (check) check.addEventListener("change", function () { later(150); });
    const quantity = row.querySelector("[data-item-quantity]");
    if (quantity) {
      stepperState(quantity);
      quantity.addEventListener("input", function () { stepperState(quantity); selectRow(row); later(400); });
      row.querySelectorAll("[data-step]").forEach(function (stepButton) {
        stepButton.addEventListener("click", function () {
          const n = toQuantity(quantity.value);
          const step = parseInt(stepButton.dataset.step, 10);
          const min = +quantity.min;
          const max = +quantity.max;
          const next = n === null ? min : Math.min(max, Math.max(min, n + step));
          if (String(next) === quantity.value) return;
          quantity.value = String(next);
          stepperState(quantity);
          selectRow(row);
          later(400);
        });
      });
    }
    const amount = row.querySelector("[data-item-amount]");
    if (amount) {
      amount.addEventListener("input", function () { selectRow(row); later(800); });
      amount.addEventListener("change", function () { later(0); });
    }
  });

  function applyCode() {
    clearTimeout(timer);
    return refresh({ code: discountInput.value.trim() || null, focus: true });
  }
  if (discountInput) {
    document.getElementById("discount-apply").addEventListener("click", applyCode);
    discountInput.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); applyCode(); }
    });
  }

  // -- paying --------------------------------------------------------------------------
  function contact() {
    const out = {};
    document.querySelectorAll("[data-contact]").forEach(function (input) {
      const value = input.value.trim();
      if (value || input.dataset.contact === "email") out[input.dataset.contact] = value;
    });
    return out;
  }

  function address(kind) {
    const block = document.querySelector('[data-address="' + kind + '"]');
    if (!block) return undefined;
    const out = {};
    block.querySelectorAll("[data-part]").forEach(function (el) {
      const value = el.value.trim();
      if (value) out[el.dataset.part] = value;
    });
    return out;
  }

  function done(result) {
    if (result.redirect_url) { window.location.assign(result.redirect_url); return; }
    form.hidden = true;
    document.querySelectorAll("[data-item] input, [data-item] button, #discount-code, #discount-apply")
      .forEach(function (el) { el.disabled = true; });
    const confirmation = document.getElementById("confirmation");
    confirmation.hidden = false;
    confirmation.focus();
  }

  async function complete() {
    const r = await post(base + "/complete", {});
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
    // e.g. 422 on discount_code: the code's last redemption went to another buyer
    const rest = showErrors(r.data.errors, true);
    if (rest.length || !r.data.errors) {
      formError.textContent = r.data.detail || "The payment could not be completed. Please try again.";
    }
  }

  // What can be told before asking the server: an empty card or IBAN, an amount that
  // is not one.
  function localErrors(method) {
    const errors = [];
    readItems(errors, false);
    if (method === "sepa_debit" && !iban()) errors.push({ field: "iban", message: "Enter your IBAN." });
    if (method === "card" && (!cardState || cardState.empty)) {
      errors.push({ field: "card", message: "Enter your card details." });
    }
    return errors;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    clearErrors();
    formError.textContent = "";
    const method = chosenMethod();
    const local = localErrors(method);
    if (local.length) { showErrors(local, true); return; }
    button.disabled = true;
    try {
      // The total on the button must be the one charged: bring it up to date first
      // (a change not priced yet, a code typed but not applied); if it moved, the buyer
      // sees the new total and presses Pay again.
      clearTimeout(timer);
      const typedCode = discountInput ? discountInput.value.trim() || null : null;
      const priced = await refresh({ code: typedCode, focus: true });
      if (!priced.ok) return;
      if (priced.changed) {
        formError.textContent = "The total is now " + button.textContent.replace(/^Pay\s*/, "") + ". Check it, then press Pay.";
        return;
      }
      const details = contact();
      const body = { items: readItems([], false), contact: details };
      if (appliedCode) body.discount_code = appliedCode;
      const billingAddress = address("billing_address");
      const shippingAddress = address("shipping_address");
      if (billingAddress) body.billing_address = billingAddress;
      if (shippingAddress) body.shipping_address = shippingAddress;
      const r = await post(base, body);
      if (r.status !== 200) {
        const rest = showErrors(r.data.errors, true);
        if (rest.length || !r.data.errors) {
          formError.textContent = r.data.detail || "Please check the form.";
          if (rest.length) formError.textContent += " " + rest.map(function (e) { return e.field + ": " + e.message; }).join("; ");
        }
        return;
      }
      if (r.data.display) render(r.data.display);
      const name = [details.firstname, details.lastname].filter(Boolean).join(" ");
      const billing = { email: details.email };
      if (name) billing.name = name;
      if (billingAddress) billing.address = billingAddress;
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

  // A browser that restored the buyer's earlier choices (back button, reload) shows
  // their summary, not the first one.
  if (JSON.stringify({ items: readItems([], false) }) !== shownKey) refresh();
})();
