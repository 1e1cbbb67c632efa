/* InferGate's console: one page over the gateway's own API, served from the same origin.
   No framework and no build step: the DOM is built with el() (never innerHTML, so nothing the
   API returns is read as markup), and the Content-Security-Policy allows this file alone. */
(() => {
  "use strict";

  // The page is <base>/console; the API is <base>/v1 and <base>/admin/v1 (a stage's prefix, or none).
  const BASE = location.pathname.replace(/\/console\/?$/, "");
  const STORE = sessionStorage; // the tab's own: a credential never outlives the tab, nor reaches a cookie or URL
  const main = document.getElementById("main");

  // ---- building blocks ------------------------------------------------------------------

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  const svg = (tag, attributes = {}, ...children) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    node.append(...children);
    return node;
  };

  const number = (value) => (value === null || value === undefined ? "–" : Number(value).toLocaleString("en"));
  const money = (micros, currency) => `${(micros / 1e6).toFixed(micros % 10000 ? 6 : 2)} ${currency}`;
  const when = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "–");

  function notify(text, kind = "ok") {
    const notice = document.getElementById("notice");
    notice.textContent = text;
    notice.className = kind;
  }

  /** Asks before anything changes; resolves true when the operator confirms. */
  function confirmAction(text, action) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = action;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  function heading(text, ...rest) {
    main.replaceChildren(el("h1", { text }), ...rest.filter((part) => part !== null && part !== undefined));
    main.focus();
  }

  function table(caption, columns, rows) {
    // A wide table scrolls within its own box, which the keyboard can reach and scroll too.
    return el("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": caption }, el("table", {},
      el("caption", { text: caption }),
      el("thead", {}, el("tr", {}, columns.map((name) => el("th", { scope: "col", text: name })))),
      el("tbody", {}, rows.length ? rows.map((cells) => el("tr", {}, cells.map((cell) => el("td", {}, cell))))
        : el("tr", {}, el("td", { colspan: columns.length, text: "Nothing here yet." })))));
  }

  /** What was typed in a field (trimmed), and the same as a figure: "" is none (null). */
  const typed = (part) => part.querySelector("input").value.trim();
  const figure = (part) => (typed(part) === "" ? null : Number(typed(part)));

  /** A labelled field: the label names the input for screen readers and for tests alike. */
  function field(label, attributes) {
    const id = `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
    return el("div", { class: "field" }, el("label", { for: id, text: label }), el("input", { id, name: id, ...attributes }));
  }

  // ---- the API ----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      const detail = body && (body.error || body);
      super((detail && detail.message) || `The gateway answered ${status}.`);
      this.status = status;
      this.code = detail && (detail.code || detail.type);
    }
  }

  const session = {
    get credential() { return STORE.getItem("infergate.credential"); },
    get kind() { return STORE.getItem("infergate.kind"); },
    get label() { return STORE.getItem("infergate.label"); },
    begin(credential, kind, label) {
      STORE.setItem("infergate.credential", credential);
      STORE.setItem("infergate.kind", kind);
      STORE.setItem("infergate.label", label);
    },
    end() { ["credential", "kind", "label"].forEach((name) => STORE.removeItem(`infergate.${name}`)); },
  };

  async function request(method, path, body, credential = session.credential) {
    const headers = { Authorization: `Bearer ${credential}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (response.ok) return response;
    const answer = await response.json().catch(() => null);
    if (response.status === 401 && credential === session.credential) {
      session.end();
      render();
    }
    throw new ApiError(response.status, answer);
  }

  const api = async (method, path, body) => (await request(method, path, body)).json();
  const query = (path, params) => {
    const given = Object.entries(params).filter(([, value]) => value !== null && value !== undefined && value !== "");
    return given.length ? `${path}?${new URLSearchParams(given)}` : path;
  };

  /** Runs `work`, showing the API's message if it fails, and whether it succeeded. */
  async function attempt(work, done) {
    try {
      await work();
      if (done) notify(done);
      return true;
    } catch (error) {
      notify(error.message, "error");
      return false;
    }
  }

  // ---- signing in ----------------------------------------------------------------------------

  const oidc = {
    issuer: document.querySelector('meta[name="infergate-oidc-issuer"]').content,
    clientId: document.querySelector('meta[name="infergate-oidc-client-id"]').content,
  };
  const redirectUri = () => location.origin + location.pathname;
  const randomText = (bytes) => base64url(crypto.getRandomValues(new Uint8Array(bytes)));

  function base64url(bytes) {
    return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function discovery() {
    const response = await fetch(`${oidc.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
    if (!response.ok) throw new Error(`The identity provider's discovery answered ${response.status}.`);
    return response.json();
  }

  /** The authorization-code flow with PKCE: off to the identity provider, back with a code. */
  async function signInWithSso() {
    const provider = await discovery();
    const verifier = randomText(32);
    const state = randomText(16);
    const nonce = randomText(16);
    STORE.setItem("infergate.pkce", JSON.stringify({ verifier, state, nonce }));
    const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    location.assign(`${provider.authorization_endpoint}?${new URLSearchParams({
      response_type: "code", client_id: oidc.clientId, redirect_uri: redirectUri(), scope: "openid email profile",
      state, nonce, code_challenge: challenge, code_challenge_method: "S256",
    })}`);
  }

  /** Back from the identity provider: the code exchanged for its ID token, which the gateway accepts. */
  async function finishSso(params) {
    const pending = JSON.parse(STORE.getItem("infergate.pkce") || "null");
    STORE.removeItem("infergate.pkce");
    history.replaceState(null, "", location.pathname);
    if (params.get("error")) throw new Error(`The identity provider refused: ${params.get("error_description") || params.get("error")}.`);
    if (!pending || pending.state !== params.get("state")) throw new Error("That sign-in was not started here; try again.");
    const provider = await discovery();
    const response = await fetch(provider.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "authorization_code", code: params.get("code"), redirect_uri: redirectUri(),
        client_id: oidc.clientId, code_verifier: pending.verifier }),
    });
    const tokens = await response.json().catch(() => ({}));
    if (!response.ok || !tokens.id_token) throw new Error(tokens.error_description || "The identity provider gave no ID token.");
    const claims = JSON.parse(atob(tokens.id_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    if (claims.nonce !== pending.nonce) throw new Error("The ID token was not made for this sign-in; try again.");
    await request("GET", "/v1/usage", undefined, tokens.id_token);
    session.begin(tokens.id_token, "user", claims.email || claims.sub);
  }

  async function signInWithKey(credential) {
    if (credential.startsWith("iga_")) {
      await request("GET", "/admin/v1/plans", undefined, credential);
      session.begin(credential, "operator", `admin key ${credential.slice(0, 8)}…`);
    } else {
      await request("GET", "/v1/usage", undefined, credential);
      session.begin(credential, "user", `key ${credential.slice(0, 8)}…`);
    }
  }

  function signInPage() {
    const key = field("API key", { type: "password", autocomplete: "off", required: true, spellcheck: "false" });
    const form = el("form", {
      class: "card",
      onsubmit: async (event) => {
        event.preventDefault();
        if (await attempt(() => signInWithKey(typed(key)))) render();
      },
    }, el("p", { text: "Sign in with a key: a user's key (igk_…) opens your keys, usage and playground; an admin key (iga_…) opens the operator's pages." }),
    key, el("button", { type: "submit", text: "Sign in" }));
    const sso = oidc.issuer && oidc.clientId
      ? el("div", { class: "card" }, el("p", { text: "Or sign in through your organisation's identity provider." }),
        el("button", { type: "button", class: "secondary", text: "Sign in with single sign-on",
          onclick: () => attempt(signInWithSso) }))
      : null;
    heading("Sign in", form, sso);
  }

  // ---- charts ---------------------------------------------------------------------------------

  /** Bars of `points` ([label, value]), with the figures as a table beside them for screen readers. */
  function barChart(title, points, unit = "tokens") {
    const width = 600, height = 160, gap = 4;
    const most = Math.max(1, ...points.map(([, value]) => value));
    const bar = Math.min(48, points.length ? (width - gap * points.length) / points.length : width);
    const bars = points.map(([label, value], index) => {
      const tall = Math.max(1, Math.round((value / most) * (height - 20)));
      return svg("rect", { x: index * (bar + gap), y: height - tall, width: bar, height: tall, class: "bar" },
        svg("title", {}, `${label}: ${number(value)} ${unit}`));
    });
    const picture = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart" },
      svg("title", {}, title), ...bars);
    return el("figure", {}, el("figcaption", { text: title }), picture,
      table(`${title}, as figures`, ["", unit], points.map(([label, value]) => [label, number(value)])));
  }

  // ---- a user's pages ---------------------------------------------------------------------------

  function meter(label, used, limit) {
    if (limit === null || limit === undefined) return el("p", { text: `${label}: ${number(used)}, with no limit.` });
    const share = limit ? Math.min(100, Math.round((used / limit) * 100)) : 0;
    return el("div", { class: "meter" }, el("span", { text: `${label}: ${number(used)} of ${number(limit)} (${share}%)` }),
      el("progress", { max: 100, value: share, "aria-label": label }));
  }

  async function usagePage() {
    const usage = await api("GET", "/v1/usage");
    const parts = [
      el("p", { text: `${usage.period}: ${number(usage.requests)} requests, ${money(usage.cost_micros, usage.currency)}. Resets ${when(usage.resets_at)}.` }),
      meter("Your monthly tokens", usage.tokens_used, usage.token_quota),
    ];
    if (usage.team) {
      parts.push(meter(`Your team's tokens (${usage.team.team_id})`, usage.team.tokens_used, usage.team.token_quota));
      if (usage.team.budget_micros !== null) {
        parts.push(meter(`Your team's budget, in micros of ${usage.currency}`, usage.team.cost_micros, usage.team.budget_micros));
      }
    }
    if (usage.key) parts.push(meter(`This key's budget, in micros of ${usage.currency}`, usage.key.cost_micros, usage.key.budget_micros));
    parts.push(barChart("Tokens by day", Object.entries(usage.by_day).map(([day, tally]) => [day, tally.tokens])));
    parts.push(barChart("Tokens by model", Object.entries(usage.by_model).map(([model, tally]) => [model, tally.tokens])));
    parts.push(table("By model", ["Model", "Tokens", "Requests", "Cost"], Object.entries(usage.by_model).map(
      ([model, tally]) => [model, number(tally.tokens), number(tally.requests), money(tally.cost_micros, usage.currency)])));
    heading("Usage", ...parts);
  }

  function shownOnce(made, what) {
    const secret = el("code", { class: "secret", text: made.api_key });
    return el("div", { class: "card made", role: "region", "aria-label": "Your new key" },
      el("p", {}, el("strong", { text: `${what}. ` }), "Copy it now: it is shown this once, and InferGate keeps only its hash."),
      secret, el("button", { type: "button", text: "Copy key", onclick: () => navigator.clipboard.writeText(made.api_key)
        .then(() => notify("The key is on your clipboard."), () => notify("Select the key and copy it.", "error")) }));
  }

  async function keysPage(made) {
    const { data } = await api("GET", "/v1/keys");
    const rows = data.map((key) => [key.name || "–", el("code", { text: `${key.prefix}…` }), key.status, when(key.created_at),
      when(key.last_used_at), when(key.expires_at), keyLimits(key), keyActions(key)]);
    const name = field("Name", { maxlength: 64, placeholder: "ci" });
    const days = field("Expires in days", { type: "number", min: 1, max: 3650, placeholder: "never" });
    const form = el("form", { class: "card inline", onsubmit: async (event) => {
      event.preventDefault();
      const body = {};
      const named = typed(name);
      const lasting = typed(days);
      if (named) body.name = named;
      if (lasting) body.expires_in_days = Number(lasting);
      const lasts = lasting ? `for ${lasting} days` : "until you revoke it";
      if (!await confirmAction(`Create a key${named ? ` named ${named}` : ""} that works ${lasts}?`, "Create")) return;
      let issued;
      if (await attempt(async () => { issued = await api("POST", "/v1/keys", body); }, "Key created.")) keysPage(issued);
    } }, name, days, el("button", { type: "submit", text: "Create key" }));
    heading("Keys", made ? shownOnce(made, made.replaces ? "Key rotated" : "Key created") : null, form,
      table("Your keys", ["Name", "Key", "Status", "Created", "Last used", "Stops working", "Limits of its own", ""], rows));
  }

  /** What a key alone may do, beyond its user's plan: its models, its budget, its quotas of some models. */
  function keyLimits(key) {
    const limits = [];
    if (key.allowed_models) limits.push(`models: ${key.allowed_models.join(", ")}`);
    if (key.monthly_budget_micros !== null && key.monthly_budget_micros !== undefined) {
      limits.push(`budget: ${number(key.monthly_budget_micros)} micros a month`);
    }
    for (const [model, tokens] of Object.entries(key.model_quotas || {})) limits.push(`${model}: ${number(tokens)} tokens a month`);
    return limits.join("; ") || "none";
  }

  function keyActions(key) {
    if (key.status !== "active") return "";
    const label = key.name || key.prefix;
    return el("span", { class: "row-actions" },
      el("button", { type: "button", class: "secondary", text: "Rotate", "aria-label": `Rotate ${label}`, onclick: async () => {
        if (!await confirmAction(`Rotate ${label}? A new key replaces it; the old one keeps working for 24 hours.`, "Rotate")) return;
        let issued;
        if (await attempt(async () => { issued = await api("POST", `/v1/keys/${key.key_id}/rotate`, {}); }, "Key rotated.")) keysPage(issued);
      } }),
      el("button", { type: "button", class: "danger", text: "Revoke", "aria-label": `Revoke ${label}`, onclick: async () => {
        if (!await confirmAction(`Revoke ${label}? Requests with it are refused from now on.`, "Revoke")) return;
        if (await attempt(() => api("DELETE", `/v1/keys/${key.key_id}`), `Key ${label} revoked.`)) keysPage();
      } }));
  }

  async function playgroundPage() {
    const { data } = await api("GET", "/v1/models");
    const model = el("select", { id: "f-model" }, data.map((entry) => el("option", { value: entry.id, text: entry.id })));
    const prompt = el("textarea", { id: "f-prompt", rows: 4, required: true });
    const answer = el("output", { class: "answer", "aria-live": "polite", for: "f-prompt" });
    const cost = el("p", { class: "cost" });
    const send = el("button", { type: "submit", text: "Send" });
    const form = el("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      send.disabled = true;
      answer.textContent = "";
      cost.textContent = "";
      await attempt(() => streamChat(model.value, prompt.value, answer, cost));
      send.disabled = false;
    } }, el("div", { class: "field" }, el("label", { for: "f-model", text: "Model" }), model),
    el("div", { class: "field" }, el("label", { for: "f-prompt", text: "Message" }), prompt), send);
    heading("Playground", form, el("h2", { text: "Answer" }), answer, cost);
  }

  /** One chat, streamed: each piece of the answer shown as it arrives, then what it cost in tokens. */
  async function streamChat(model, text, answer, cost) {
    const response = await request("POST", "/v1/chat/completions", {
      model, messages: [{ role: "user", content: text }], stream: true, stream_options: { include_usage: true },
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      const events = pending.split("\n\n");
      pending = events.pop();
      for (const event of events) showEvent(event, answer, cost);
    }
  }

  function showEvent(event, answer, cost) {
    const data = event.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("");
    if (!data || data === "[DONE]") return;
    const chunk = JSON.parse(data);
    if (chunk.error) throw new ApiError(0, chunk);
    const piece = chunk.choices && chunk.choices[0] && chunk.choices[0].delta && chunk.choices[0].delta.content;
    if (piece) answer.textContent += piece;
    if (chunk.usage) {
      cost.textContent = `${number(chunk.usage.total_tokens)} tokens: ${number(chunk.usage.prompt_tokens)} prompt, ${number(chunk.usage.completion_tokens)} answer.`;
    }
  }

  // ---- an operator's pages -----------------------------------------------------------------------

  /** A paged list: `load(cursor)` answers {data, next_cursor}; earlier pages' cursors are kept for going back. */
  function paged(load, show) {
    const cursors = [null];
    const place = el("div");
    async function open(index) {
      const page = await load(cursors[index]);
      cursors[index + 1] = page.next_cursor;
      const previous = el("button", { type: "button", class: "secondary", text: "Previous page", disabled: index === 0,
        onclick: () => attempt(() => open(index - 1)) });
      const next = el("button", { type: "button", class: "secondary", text: "Next page", disabled: !page.next_cursor,
        onclick: () => attempt(() => open(index + 1)) });
      place.replaceChildren(show(page.data), el("nav", { class: "pager", "aria-label": "Pages of the list" },
        previous, el("span", { text: `Page ${index + 1}` }), next));
    }
    return { place, open: () => open(0) };
  }

  async function usersPage() {
    const email = field("Email starts with", { type: "search", maxlength: 254 });
    const plan = field("Plan", { type: "search", maxlength: 64 });
    const detail = el("section", { "aria-label": "The chosen user" });
    const list = paged((cursor) => api("GET", query("/admin/v1/users", {
      email: typed(email), plan: typed(plan), cursor, limit: 20,
    })), (users) => table("Users", ["User", "Plan", "Status", "Team", ""], users.map((user) => [
      user.email || user.name || user.user_id, user.plan, user.status, user.team_id || "–",
      el("button", { type: "button", class: "secondary", text: "Manage", "aria-label": `Manage ${user.email || user.user_id}`,
        onclick: () => attempt(() => showUser(user.user_id, detail)) })])));
    const search = el("form", { class: "card inline", role: "search", onsubmit: (event) => {
      event.preventDefault();
      attempt(list.open);
    } }, email, plan, el("button", { type: "submit", text: "Search" }));
    heading("Users", search, list.place, detail);
    await list.open();
  }

  async function showUser(userId, place) {
    const [user, plans] = await Promise.all([api("GET", `/admin/v1/users/${userId}`), api("GET", "/admin/v1/plans")]);
    const who = user.email || user.name || user.user_id;
    const reopen = () => showUser(userId, place);
    const suspend = user.status === "active"
      ? ["Suspend", `Suspend ${who}? Every key of theirs is refused until you reactivate them.`, "suspended"]
      : ["Reactivate", `Reactivate ${who}? Their keys work again.`, "active"];
    const planPick = el("select", { id: "f-user-plan" }, plans.data.map((entry) => el("option", {
      value: entry.name, text: entry.name, selected: entry.name === user.plan })));
    const grant = field("Extra tokens this month", { type: "number", min: 1, required: true });
    const figures = FIGURES.map(([name, label]) => [name, field(label, { type: "number", min: 0,
      value: user.overrides[name] ?? "", placeholder: `the plan's: ${number(plans.data.find((p) => p.name === user.plan)?.[name])}` })]);
    place.replaceChildren(el("h2", { text: who }),
      el("p", { text: `${user.user_id} · ${user.status} · ${user.plan} · ${number(user.usage.tokens_used)} of ${number(user.usage.token_quota)} tokens this month` }),
      el("button", { type: "button", class: suspend[0] === "Suspend" ? "danger" : "", text: suspend[0], onclick: async () => {
        if (!await confirmAction(suspend[1], suspend[0])) return;
        if (await attempt(() => api("PATCH", `/admin/v1/users/${userId}`, { status: suspend[2] }), `${who} is ${suspend[2]}.`)) reopen();
      } }),
      changeForm(`Change ${who}'s plan`, [el("div", { class: "field" }, el("label", { for: "f-user-plan", text: "Plan" }), planPick)],
        () => ({ plan: planPick.value }), `Put ${who} on another plan?`, userId, reopen),
      changeForm(`Set ${who}'s own figures`, figures.map(([, input]) => input), () => ({
        overrides: Object.fromEntries(figures.map(([name, input]) => [name, figure(input)])),
      }), `Change ${who}'s own figures? An empty one takes the plan's.`, userId, reopen),
      el("form", { class: "card inline", "aria-label": `Grant ${who} tokens`, onsubmit: async (event) => {
        event.preventDefault();
        const tokens = figure(grant);
        if (!await confirmAction(`Grant ${who} ${number(tokens)} more tokens this month?`, "Grant")) return;
        if (await attempt(() => api("POST", `/admin/v1/users/${userId}/grants`, { tokens }), `${who} was granted ${number(tokens)} tokens.`)) reopen();
      } }, grant, el("button", { type: "submit", text: "Grant" })),
      table(`${who}'s keys`, ["Name", "Key", "Status", "Last used"], user.keys.map((key) => [
        key.name || "–", el("code", { text: `${key.prefix}…` }), key.status, when(key.last_used_at)])));
  }

  // A plan's figures an operator may set for one user alone (domain/plans.py's RANGES).
  const FIGURES = [["monthly_token_quota", "Tokens a month"], ["rate_limit_rpm", "Requests a minute, per key"],
    ["rate_limit_user_rpm", "Requests a minute, per user"], ["rate_limit_tpm", "Tokens a minute"],
    ["max_output_tokens", "Most tokens an answer"], ["max_api_keys", "Most working keys"],
    ["max_concurrent_requests", "Most requests at once"]];

  function changeForm(label, fields, body, question, userId, after) {
    return el("form", { class: "card inline", "aria-label": label, onsubmit: async (event) => {
      event.preventDefault();
      if (!await confirmAction(question, "Change")) return;
      if (await attempt(() => api("PATCH", `/admin/v1/users/${userId}`, body()), "Changed.")) after();
    } }, ...fields, el("button", { type: "submit", text: "Change" }));
  }

  async function operatorUsagePage() {
    const month = await api("GET", query("/admin/v1/usage", { by: "model", top: 10 }));
    heading("Usage",
      el("p", { text: `${month.period}: ${number(month.tokens_used)} tokens, ${number(month.requests)} requests by ${number(month.users)} users, ${money(month.cost_micros, month.currency)}.` }),
      barChart("Tokens by model", month.breakdown.map((share) => [share.id, share.tokens])),
      table("The month's heaviest users", ["User", "Tokens", "Requests", "Cost"], month.top.map((user) => [
        user.user_id, number(user.tokens), number(user.requests), money(user.cost_micros, month.currency)])));
  }

  async function teamsPage() {
    const detail = el("section", { "aria-label": "The chosen team" });
    const list = paged((cursor) => api("GET", query("/admin/v1/teams", { cursor, limit: 20 })), (teams) => table("Teams",
      ["Team", "Tokens a month", "Budget a month (micros)", "Models", ""], teams.map((team) => [
        team.name, number(team.monthly_token_quota), number(team.monthly_budget_micros),
        (team.allowed_models || ["any"]).join(", "),
        el("button", { type: "button", class: "secondary", text: "Manage", "aria-label": `Manage ${team.name}`,
          onclick: () => attempt(() => showTeam(team.team_id, detail)) })])));
    const name = field("Team name", { maxlength: 100, required: true });
    const limits = teamLimits({});
    const create = el("form", { class: "card inline", "aria-label": "Create a team", onsubmit: async (event) => {
      event.preventDefault();
      const named = typed(name);
      if (!await confirmAction(`Create team ${named}?`, "Create")) return;
      let made;
      if (await attempt(async () => { made = await api("POST", "/admin/v1/teams", { name: named, ...limits.values() }); },
        `Team ${named} created.`)) {
        await list.open();
        await showTeam(made.team_id, detail);
      }
    } }, name, ...limits.fields, el("button", { type: "submit", text: "Create team" }));
    heading("Teams", create, list.place, detail);
    await list.open();
  }

  /** A team's two figures as fields: empty is none (null), which clears a figure when changed. */
  function teamLimits(team) {
    const quota = field("Team tokens a month", { type: "number", min: 0, value: team.monthly_token_quota ?? "", placeholder: "no quota" });
    const budget = field("Team budget a month, in micros", { type: "number", min: 0, value: team.monthly_budget_micros ?? "", placeholder: "no budget" });
    return { fields: [quota, budget], values: () => ({ monthly_token_quota: figure(quota), monthly_budget_micros: figure(budget) }) };
  }

  async function showTeam(teamId, place) {
    const team = await api("GET", `/admin/v1/teams/${teamId}`);
    const reopen = () => showTeam(teamId, place);
    const limits = teamLimits(team);
    const member = field("User id to add", { maxlength: 64, required: true, placeholder: "usr_…" });
    place.replaceChildren(el("h2", { text: team.name }),
      meter(`${team.name}'s tokens this month`, team.usage.tokens_used, team.usage.token_quota),
      meter(`${team.name}'s spend this month, in micros of ${team.currency}`, team.usage.cost_micros, team.usage.budget_micros),
      el("form", { class: "card inline", "aria-label": `Set ${team.name}'s limits`, onsubmit: async (event) => {
        event.preventDefault();
        if (!await confirmAction(`Change ${team.name}'s limits? An empty one is none.`, "Change")) return;
        if (await attempt(() => api("PATCH", `/admin/v1/teams/${teamId}`, limits.values()), "Changed.")) reopen();
      } }, ...limits.fields, el("button", { type: "submit", text: "Change" })),
      el("form", { class: "card inline", "aria-label": `Add a member to ${team.name}`, onsubmit: async (event) => {
        event.preventDefault();
        const userId = typed(member);
        if (!await confirmAction(`Add ${userId} to ${team.name}? Their requests count against the team from now on.`, "Add")) return;
        if (await attempt(() => api("POST", `/admin/v1/teams/${teamId}/members`, { user_id: userId }), `${userId} joined ${team.name}.`)) reopen();
      } }, member, el("button", { type: "submit", text: "Add member" })),
      table(`${team.name}'s members`, ["Member", "Kind", ""], team.members.map((one) => {
        const who = one.email || one.name || one.user_id;
        return [who, one.kind, el("button", { type: "button", class: "danger", text: "Remove", "aria-label": `Remove ${who}`,
          onclick: async () => {
            if (!await confirmAction(`Remove ${who} from ${team.name}?`, "Remove")) return;
            if (await attempt(() => api("DELETE", `/admin/v1/teams/${teamId}/members/${one.user_id}`), `${who} left ${team.name}.`)) reopen();
          } })];
      })));
  }

  async function serversPage() {
    const { data } = await api("GET", "/admin/v1/servers");
    heading("Model servers", table("The pool", ["Server", "Health", "Breaker", "Models loaded", "In flight", "Requests a minute", "Failures a minute", "p50"],
      data.map((server) => [server.name, server.healthy ? "healthy" : "unhealthy", server.breaker,
        server.loaded.join(", ") || "none", `${server.in_flight}${server.slots ? ` of ${server.slots}` : ""}`,
        number(server.requests_last_minute), number(server.failures_last_minute),
        server.p50_ms === null ? "–" : `${server.p50_ms} ms`])));
  }

  async function auditPage() {
    const actor = field("Actor", { type: "search", maxlength: 200 });
    const subject = field("Subject id", { type: "search", maxlength: 100 });
    const action = field("Action", { type: "search", maxlength: 64, placeholder: "change_user" });
    const list = paged((cursor) => api("GET", query("/admin/v1/audit", {
      actor: typed(actor), subject: typed(subject), action: typed(action), cursor, limit: 20,
    })), (entries) => table("Changes, the newest first", ["When", "Actor", "Action", "Subject", "Change"], entries.map((entry) => [
      when(entry.at), entry.actor, entry.action, `${entry.subject.type} ${entry.subject.id}`, changed(entry)])));
    const filter = el("form", { class: "card inline", role: "search", onsubmit: (event) => {
      event.preventDefault();
      attempt(list.open);
    } }, actor, subject, action, el("button", { type: "submit", text: "Filter" }));
    heading("Audit log", filter, list.place);
    await list.open();
  }

  function changed(entry) {
    const before = entry.before || {};
    const after = entry.after || {};
    const names = [...new Set([...Object.keys(before), ...Object.keys(after)])]
      .filter((name) => JSON.stringify(before[name]) !== JSON.stringify(after[name]) && !name.endsWith("_at"));
    const shown = (value) => (value === null || value === undefined ? "(none)" : JSON.stringify(value));
    return names.map((name) => `${name}: ${shown(before[name])} → ${shown(after[name])}`).join("; ") || "–";
  }

  // ---- the frame ------------------------------------------------------------------------------------

  const PAGES = {
    user: { "#/usage": ["Usage", usagePage], "#/keys": ["Keys", keysPage], "#/playground": ["Playground", playgroundPage] },
    operator: { "#/users": ["Users", usersPage], "#/teams": ["Teams", teamsPage], "#/usage": ["Usage", operatorUsagePage],
      "#/servers": ["Model servers", serversPage], "#/audit": ["Audit log", auditPage] },
  };

  function frame(pages, current) {
    document.getElementById("nav").replaceChildren(...Object.entries(pages).map(([hash, [name]]) =>
      el("a", { href: hash, text: name, "aria-current": hash === current ? "page" : null })));
    document.getElementById("who").replaceChildren(el("span", { text: session.label }),
      el("button", { type: "button", class: "secondary", text: "Sign out", onclick: () => {
        session.end();
        notify("Signed out.");
        render();
      } }));
  }

  async function render() {
    const pages = PAGES[session.kind];
    if (!session.credential || !pages) {
      document.getElementById("nav").replaceChildren();
      document.getElementById("who").replaceChildren();
      signInPage();
      return;
    }
    const current = pages[location.hash] ? location.hash : Object.keys(pages)[0];
    frame(pages, current);
    document.title = `${pages[current][0]} · InferGate console`;
    main.setAttribute("aria-busy", "true");
    await attempt(() => pages[current][1]());
    main.removeAttribute("aria-busy");
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    if (params.has("code") || params.has("error")) await attempt(() => finishSso(params), "Signed in.");
    window.addEventListener("hashchange", () => {
      notify(""); // what happened on the last page is not news on this one
      render();
    });
    render();
  }

  start();
})();
