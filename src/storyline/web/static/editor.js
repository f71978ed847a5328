// Storyline's story editor: plain JavaScript, no build step, nothing fetched from elsewhere.
// HTTP POST /graphql for queries and mutations; one graphql-transport-ws subscription,
// accountChanges, keeps the project list and the balance current (no polling).
//
// Every operation is in one document, editor.graphql, and named by its operationName. The
// server says how to name that document (/editor/document): by its text, or by its hash
// when it runs trusted documents only.

const TOKEN_KEY = "storyline.token";
// A resubscription asks for what changed since the newest time seen, less this margin: a
// change's time is its transaction's start, which may precede the commit of one seen before.
const RESYNC_MARGIN_MS = 10_000;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 15_000;
// A FAILED project's refund is in the same transaction, so its BalanceChange follows at once;
// only after a catch-up that skipped it (the contract sends the newest entry) is it looked up.
const REFUND_GRACE_MS = 3_000;

const $ = (selector, root = document) => root.querySelector(selector);

/** What names the page's document in a request: {query} or {documentId}. Asked once. */
let named = null;
function documentFields() {
  if (!named) {
    named = fetch("/editor/document").then((response) => {
      if (!response.ok) throw new Error(`the page's document: HTTP ${response.status}`);
      return response.json();
    });
    named.catch(() => (named = null)); // a failure is asked again next time
  }
  return named;
}

// ---- errors ------------------------------------------------------------------------------

class GraphQLError extends Error {
  constructor(error) {
    super(error.message);
    this.code = error.extensions?.code ?? "ERROR";
    this.extensions = error.extensions ?? {};
  }
}

function describe(error) {
  if (!(error instanceof GraphQLError)) return `Error: ${error.message}`;
  const ext = error.extensions;
  let text = `${error.code}: ${error.message}`;
  if (error.code === "INSUFFICIENT_CREDITS") {
    text += ` (required ${ext.required}, balance ${ext.balance})`;
  } else if (error.code === "UPSTREAM_FAILED" && ext.projectId) {
    text += ` (project ${ext.projectId})`;
  }
  return text;
}

function show(element, message) {
  element.textContent = message ?? "";
  element.hidden = !message;
}

// ---- HTTP --------------------------------------------------------------------------------

async function graphql(token, operationName, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ ...(await documentFields()), operationName, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new Error(`HTTP ${response.status} ${response.statusText}`);
  }
  if (body.errors?.length) throw new GraphQLError(body.errors[0]);
  if (!response.ok || !body.data) throw new Error(`HTTP ${response.status}`);
  return body.data;
}

// ---- graphql-transport-ws ----------------------------------------------------------------

/** One WebSocket per token, shared by every subscription (graphql-transport-ws). */
class LiveClient {
  constructor(url, token) {
    this.url = url;
    this.token = token;
    this.socket = null;
    this.ready = null; // resolves on connection_ack
    this.nextId = 1;
    this.sinks = new Map(); // subscription id -> {next, error, complete}
  }

  connect() {
    if (this.ready) return this.ready;
    this.ready = new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url, "graphql-transport-ws");
      this.socket = socket;
      socket.onopen = () =>
        this.send({ type: "connection_init", payload: { Authorization: `Bearer ${this.token}` } });
      socket.onmessage = (event) => this.receive(JSON.parse(event.data), resolve);
      socket.onclose = (event) => {
        const reason =
          event.code === 4403
            ? new GraphQLError({ message: "the token was refused", extensions: { code: "UNAUTHENTICATED" } })
            : new Error(`live connection closed (${event.code}${event.reason ? ` ${event.reason}` : ""})`);
        this.socket = null;
        this.ready = null;
        reject(reason);
        for (const sink of this.sinks.values()) sink.error(reason);
        this.sinks.clear();
      };
    });
    return this.ready;
  }

  send(message) {
    // Not before it is open: a `complete` for an operation never sent has nothing to end.
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  receive(message, acknowledged) {
    const sink = this.sinks.get(message.id);
    switch (message.type) {
      case "connection_ack":
        acknowledged();
        break;
      case "ping":
        this.send({ type: "pong" });
        break;
      case "next":
        if (message.payload.errors?.length) sink?.error(new GraphQLError(message.payload.errors[0]));
        else sink?.next(message.payload.data);
        break;
      case "error":
        this.sinks.delete(message.id);
        sink?.error(new GraphQLError(message.payload[0] ?? { message: "subscription failed" }));
        break;
      case "complete":
        this.sinks.delete(message.id);
        sink?.complete();
        break;
    }
  }

  /** Subscribe to the page document's operation `operationName`; returns a function that
   * unsubscribes. */
  subscribe(operationName, variables, sink) {
    const id = String(this.nextId++);
    this.sinks.set(id, sink);
    Promise.all([this.connect(), documentFields()]).then(
      ([, fields]) =>
        this.sinks.has(id) &&
        this.send({ type: "subscribe", id, payload: { ...fields, operationName, variables } }),
      (error) => {
        // onclose has told the sink of a lost connection; the document's failure is told here.
        if (this.sinks.delete(id)) sink.error(error);
      },
    );
    return () => {
      if (this.sinks.delete(id)) this.send({ type: "complete", id });
    };
  }

  close() {
    this.sinks.clear();
    this.socket?.close(1000, "token changed");
  }
}

// ---- the account feed --------------------------------------------------------------------

/**
 * The one accountChanges subscription. When the connection drops it resubscribes, after a
 * growing delay, with `since` the newest server time it was sent (less a margin), so it
 * catches up on every project that changed meanwhile, terminal ones included; the page
 * drops what it has already shown by version. A refusal (a bad or expired token) ends it.
 */
class AccountFeed {
  constructor(live, handlers) {
    this.live = live;
    this.handlers = handlers; // {project(event), balance(change), state(text), refused(error)}
    this.newest = 0; // ms since the epoch: the newest updatedAt / createdAt received
    this.attempt = 0;
    this.timer = null;
    this.unsubscribe = null;
    this.stopped = false;
  }

  start() {
    this.timer = null;
    const variables = this.newest ? { since: new Date(this.newest - RESYNC_MARGIN_MS).toISOString() } : {};
    this.handlers.state(this.attempt ? "reconnecting…" : "connecting…");
    this.unsubscribe = this.live.subscribe("Feed", variables, {
      next: (data) => this.receive(data.accountChanges),
      error: (error) => this.lost(error),
      complete: () => this.lost(new Error("the server ended accountChanges")),
    });
  }

  receive(change) {
    this.attempt = 0;
    this.handlers.state("live");
    const time = Date.parse(change.__typename === "BalanceChange" ? change.entry.createdAt : change.updatedAt);
    if (time > this.newest) this.newest = time;
    if (change.__typename === "BalanceChange") this.handlers.balance(change);
    else this.handlers.project(change);
  }

  lost(error) {
    this.unsubscribe?.(); // after an error in a `next`, the operation may still be running
    this.unsubscribe = null;
    if (this.stopped) return;
    if (error instanceof GraphQLError) {
      this.stopped = true; // refused: asking again would be refused again
      this.handlers.refused(error);
      return;
    }
    const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** this.attempt++) * (0.75 + Math.random() / 4);
    this.handlers.state(`offline, reconnecting in ${Math.ceil(delay / 1000)} s`);
    this.timer = setTimeout(() => this.start(), delay);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.unsubscribe?.();
  }
}

// ---- the page ----------------------------------------------------------------------------

const state = {
  token: "",
  live: null,
  feed: null,
  cards: new Map(), // project id -> card
  entryId: -1n, // the ledger entry the balance shown is after
  refunds: new Set(), // ids of projects a REFUND entry was seen for
  refundCheck: null,
  priceAsked: 0, // which price question was asked last: only its answer is shown
};

const els = {
  tokenForm: $("#token-form"),
  token: $("#token"),
  balance: $("#balance"),
  price: $("#price"),
  priceQuality: $("#price-quality"),
  accountError: $("#account-error"),
  storyForm: $("#story-form"),
  prompt: $("#prompt"),
  quality: $("#quality"),
  aspectRatio: $("#aspect-ratio"),
  submit: $("#submit"),
  storyError: $("#story-error"),
  projects: $("#projects"),
  projectsEmpty: $("#projects-empty"),
  liveState: $("#live-state"),
};

function liveUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
}

/** Run the operation `operationName` for the current token; errors go to the account panel. */
async function accountQuery(operationName, variables) {
  const token = state.token;
  try {
    const data = await graphql(token, operationName, variables);
    return token === state.token ? data : null; // null: the token changed meanwhile
  } catch (error) {
    if (token === state.token) show(els.accountError, describe(error));
    return null;
  }
}

function showPrice(price) {
  els.priceQuality.textContent = els.quality.selectedOptions[0].textContent;
  els.price.textContent = price;
}

async function refreshPrice() {
  const asked = ++state.priceAsked;
  const data = await accountQuery("Price", { quality: els.quality.value });
  // An answer that comes after a newer question's (another quality picked meanwhile)
  // would put the old quality's price beside the new one.
  if (data && asked === state.priceAsked) showPrice(data.price);
}

/** On opening: the price, the recent projects (the feed brings only live ones) and which
 * of them were refunded. Read once; everything after comes from the feed. */
async function loadDashboard() {
  const asked = ++state.priceAsked;
  const data = await accountQuery("Dashboard", { quality: els.quality.value });
  if (!data) return;
  if (asked === state.priceAsked) showPrice(data.price);
  noteRefunds(data.me.ledger.edges.map((edge) => edge.node));
  for (const { node } of data.projects.edges) upsert(node);
}

function useToken(token) {
  state.feed?.stop();
  state.live?.close();
  state.token = token.trim();
  state.live = state.feed = null;
  state.cards.clear();
  state.entryId = -1n;
  state.refunds.clear();
  clearTimeout(state.refundCheck);
  els.projects.replaceChildren();
  els.projectsEmpty.hidden = false;
  els.balance.textContent = "–";
  els.liveState.textContent = "";
  show(els.storyError, "");
  show(els.accountError, "");
  if (!state.token) return;
  localStorage.setItem(TOKEN_KEY, state.token);
  state.live = new LiveClient(liveUrl(), state.token);
  state.feed = new AccountFeed(state.live, {
    project: onProjectEvent,
    balance: onBalanceChange,
    state: (text) => (els.liveState.textContent = text),
    refused: (error) => {
      els.liveState.textContent = "not live";
      show(els.accountError, describe(error));
    },
  });
  state.feed.start();
  loadDashboard();
}

// ---- what the feed says ------------------------------------------------------------------

function onBalanceChange({ balance, entry }) {
  noteRefunds([entry]);
  const id = BigInt(entry.id);
  if (id <= state.entryId) return; // balances never go back to an older entry
  state.entryId = id;
  els.balance.textContent = balance;
}

function onProjectEvent(event) {
  let card = state.cards.get(event.projectId);
  if (!card) {
    card = addCard(event.projectId);
    loadDetails(card); // the event has no prompt: ask once, for this new project
  }
  apply(card, event);
}

/** Ledger entries: a REFUND names the FAILED project it refunds. */
function noteRefunds(entries) {
  for (const entry of entries) {
    if (entry.kind !== "REFUND" || !entry.projectId || state.refunds.has(entry.projectId)) continue;
    state.refunds.add(entry.projectId);
    const card = state.cards.get(entry.projectId);
    if (card) showRefund(card);
  }
}

/** A FAILED project whose refund was not among the events (a catch-up sends only the
 * newest entry): after a grace, read the recent ledger once for all of them. */
function expectRefund() {
  if (state.refundCheck) return;
  const token = state.token;
  state.refundCheck = setTimeout(async () => {
    state.refundCheck = null;
    if (token !== state.token || ![...state.cards.values()].some(awaitsRefund)) return;
    const data = await accountQuery("Refunds");
    if (data) noteRefunds(data.me.ledger.edges.map((edge) => edge.node));
  }, REFUND_GRACE_MS);
}

function awaitsRefund(card) {
  return card.status === "FAILED" && !state.refunds.has(card.id);
}

async function loadDetails(card) {
  const data = await accountQuery("One", { id: card.id });
  if (data?.project && state.cards.get(card.id) === card) upsert(data.project);
}

// ---- project cards -----------------------------------------------------------------------

function label(value) {
  return { FULL_HD: "Full HD", LANDSCAPE_16_9: "16:9", PORTRAIT_9_16: "9:16",
           SQUARE_1_1: "1:1", CLASSIC_4_3: "4:3" }[value] ?? value;
}

function safeUrl(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}

/** A card for a project known so far only by its id: new, so at the top. */
function addCard(id) {
  const element = $("#card-template").content.firstElementChild.cloneNode(true);
  element.dataset.projectId = id;
  $(".prompt", element).textContent = id;
  const card = { id, element, version: 0, status: null, createdAt: null };
  state.cards.set(id, card);
  els.projects.prepend(element);
  els.projectsEmpty.hidden = true;
  return card;
}

/** A whole Project (from a query or the mutation): its card described, its state applied. */
function upsert(project) {
  const card = state.cards.get(project.id) ?? addCard(project.id);
  $(".prompt", card.element).textContent = project.prompt;
  $(".meta", card.element).textContent =
    `${label(project.quality)} · ${label(project.aspectRatio)} · ${project.creditsUsed} credits` +
    ` · ${new Date(project.createdAt).toLocaleString()} · ${project.id}`;
  if (card.createdAt === null) {
    card.createdAt = Date.parse(project.createdAt);
    place(card);
  }
  apply(card, { ...project, projectId: project.id });
  return card;
}

/** Newest first: before the first card created earlier; cards still undescribed stay on top. */
function place(card) {
  const later = [...state.cards.values()].filter(
    (other) => other !== card && other.createdAt !== null && other.createdAt < card.createdAt,
  );
  const next = [...els.projects.children].find((element) =>
    later.some((other) => other.element === element),
  );
  els.projects.insertBefore(card.element, next ?? null);
}

/** Show a project state (a Project or a ProjectStatusEvent) unless the card shows a newer one. */
function apply(card, event) {
  if (event.version <= card.version) return; // seen already, or older than what is shown
  card.version = event.version;
  card.status = event.status;
  const { element } = card;
  const progress = event.progress ?? (event.status === "COMPLETED" ? 100 : 0);
  const badge = $(".status", element);
  badge.textContent = event.status;
  badge.dataset.status = event.status;
  $("progress", element).value = progress;
  $(".percent", element).textContent = `${progress}%`;
  $(".stage", element).textContent = event.stage ? `stage: ${event.stage}` : "";

  const url = event.status === "COMPLETED" && safeUrl(event.resultUrl);
  const link = $("[data-testid=result-link]", element);
  link.href = url || "#";
  link.textContent = url || "";
  $(".result", element).hidden = !url;
  show($("[data-testid=project-error]", element), event.status === "FAILED" ? event.errorMessage || "Failed." : "");
  showRefund(card);
  if (awaitsRefund(card)) expectRefund();

  const entry = document.createElement("li");
  entry.dataset.testid = "timeline-entry";
  entry.dataset.status = event.status;
  const time = document.createElement("time");
  time.dateTime = event.updatedAt;
  time.textContent = new Date(event.updatedAt).toLocaleTimeString();
  const parts = [`v${event.version}`, event.status, event.stage, event.progress != null && `${event.progress}%`];
  entry.append(time, ` ${parts.filter(Boolean).join(" · ")}`);
  $(".timeline", element).append(entry);
}

function showRefund(card) {
  $(".refunded", card.element).hidden = !(card.status === "FAILED" && state.refunds.has(card.id));
}

// ---- wiring ------------------------------------------------------------------------------

els.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  useToken(els.token.value);
});

els.quality.addEventListener("change", refreshPrice);

els.storyForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  show(els.storyError, "");
  if (!state.token) {
    show(els.storyError, "Paste a token first.");
    return;
  }
  els.submit.disabled = true;
  try {
    const data = await graphql(state.token, "Generate", {
      input: {
        prompt: els.prompt.value,
        quality: els.quality.value,
        aspectRatio: els.aspectRatio.value,
      },
    });
    upsert(data.generateStory); // the feed brings its changes, and the charge
  } catch (error) {
    show(els.storyError, describe(error)); // an UPSTREAM_FAILED project arrives by the feed
  } finally {
    els.submit.disabled = false;
  }
});

const saved = localStorage.getItem(TOKEN_KEY);
if (saved) {
  els.token.value = saved;
  useToken(saved);
}
