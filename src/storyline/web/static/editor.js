// Storyline's story editor: plain JavaScript, no build step, nothing fetched from elsewhere.
// HTTP POST /graphql for queries and mutations; graphql-transport-ws for live status.

const TOKEN_KEY = "storyline.token";
const TERMINAL = new Set(["COMPLETED", "FAILED"]);
const PROJECT_FIELDS = `id status creditsUsed errorMessage progress stage resultUrl
  prompt quality aspectRatio version createdAt updatedAt`;
const EVENT_FIELDS = "projectId status version progress stage errorMessage resultUrl updatedAt";

const $ = (selector, root = document) => root.querySelector(selector);

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

async function graphql(token, query, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
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
    this.socket?.send(JSON.stringify(message));
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

  /** Subscribe; returns a function that unsubscribes. */
  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    this.sinks.set(id, sink);
    this.connect().then(
      () => this.sinks.has(id) && this.send({ type: "subscribe", id, payload: { query, variables } }),
      () => {}, // the sink has already been told by onclose
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

// ---- the page ----------------------------------------------------------------------------

const state = { token: "", live: null, cards: new Map() };

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
};

function liveUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
}

async function refreshAccount() {
  const token = state.token;
  if (!token) return;
  const quality = els.quality.value;
  els.priceQuality.textContent = els.quality.selectedOptions[0].textContent;
  try {
    const data = await graphql(
      token,
      "query Account($quality: VideoQuality!) { me { balance } price(quality: $quality) }",
      { quality },
    );
    if (token !== state.token) return; // the token changed meanwhile
    els.balance.textContent = data.me.balance;
    els.price.textContent = data.price;
    show(els.accountError, "");
  } catch (error) {
    if (token !== state.token) return;
    els.balance.textContent = "–";
    els.price.textContent = "–";
    show(els.accountError, describe(error));
  }
}

async function loadProjects() {
  const token = state.token;
  try {
    const data = await graphql(
      token,
      `query Recent { projects(first: 10) { edges { node { ${PROJECT_FIELDS} } } } }`,
    );
    if (token !== state.token) return;
    // newest first: append in order
    for (const { node } of data.projects.edges) {
      if (!state.cards.has(node.id)) addCard(node, { atTop: false });
    }
  } catch (error) {
    if (token === state.token) show(els.accountError, describe(error));
  }
}

function useToken(token) {
  state.live?.close();
  state.token = token.trim();
  state.live = state.token ? new LiveClient(liveUrl(), state.token) : null;
  state.cards.clear();
  els.projects.replaceChildren();
  els.projectsEmpty.hidden = false;
  show(els.storyError, "");
  if (!state.token) return;
  localStorage.setItem(TOKEN_KEY, state.token);
  refreshAccount();
  loadProjects();
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

function addCard(project, { atTop }) {
  const element = $("#card-template").content.firstElementChild.cloneNode(true);
  element.dataset.projectId = project.id;
  $(".prompt", element).textContent = project.prompt;
  $(".meta", element).textContent =
    `${label(project.quality)} · ${label(project.aspectRatio)} · ${project.creditsUsed} credits` +
    ` · ${new Date(project.createdAt).toLocaleString()} · ${project.id}`;
  const card = { element, project, versions: new Set(), unsubscribe: null };
  $(".watch", element).addEventListener("click", () => watch(card));
  state.cards.set(project.id, card);
  if (atTop) els.projects.prepend(element);
  else els.projects.append(element);
  els.projectsEmpty.hidden = true;
  apply(card, { ...project, projectId: project.id });
  return card;
}

/** Show a project state (a Project or a ProjectStatusEvent) on its card. */
function apply(card, event) {
  const { element } = card;
  const progress = event.progress ?? (event.status === "COMPLETED" ? 100 : 0);
  const badge = $(".badge", element);
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

  if (!card.versions.has(event.version)) {
    card.versions.add(event.version);
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
  card.project = { ...card.project, ...event };
  updateWatchButton(card);
}

function updateWatchButton(card) {
  const button = $(".watch", card.element);
  button.hidden = TERMINAL.has(card.project.status) || card.unsubscribe !== null;
}

function watch(card) {
  if (card.unsubscribe || !state.live) return;
  const projectError = $("[data-testid=project-error]", card.element);
  show(projectError, "");
  card.unsubscribe = state.live.subscribe(
    `subscription Watch($id: ID!) { projectStatus(projectId: $id) { ${EVENT_FIELDS} } }`,
    { id: card.project.id },
    {
      next: (data) => apply(card, data.projectStatus),
      error: (error) => {
        card.unsubscribe = null;
        updateWatchButton(card);
        show(projectError, describe(error));
      },
      complete: () => {
        card.unsubscribe = null;
        updateWatchButton(card);
        refreshAccount();
      },
    },
  );
  card.element.classList.add("watching");
  updateWatchButton(card);
}

// ---- wiring ------------------------------------------------------------------------------

els.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  useToken(els.token.value);
});

els.quality.addEventListener("change", refreshAccount);

els.storyForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  show(els.storyError, "");
  if (!state.token) {
    show(els.storyError, "Paste a token first.");
    return;
  }
  els.submit.disabled = true;
  try {
    const data = await graphql(
      state.token,
      `mutation Generate($input: GenerateStoryInput!) { generateStory(input: $input) { ${PROJECT_FIELDS} } }`,
      {
        input: {
          prompt: els.prompt.value,
          quality: els.quality.value,
          aspectRatio: els.aspectRatio.value,
        },
      },
    );
    const project = data.generateStory;
    const card = state.cards.get(project.id) ?? addCard(project, { atTop: true });
    watch(card);
  } catch (error) {
    show(els.storyError, describe(error));
    if (error.code === "UPSTREAM_FAILED") loadFailed(error.extensions.projectId);
  } finally {
    els.submit.disabled = false;
    refreshAccount();
  }
});

/** An UPSTREAM_FAILED project exists (FAILED and refunded): show its card too. */
async function loadFailed(projectId) {
  if (!projectId || state.cards.has(projectId)) return;
  try {
    const data = await graphql(state.token, `query One($id: ID!) { project(id: $id) { ${PROJECT_FIELDS} } }`, {
      id: projectId,
    });
    if (data.project && !state.cards.has(projectId)) addCard(data.project, { atTop: true });
  } catch {
    // the error is already on the page
  }
}

const saved = localStorage.getItem(TOKEN_KEY);
if (saved) {
  els.token.value = saved;
  useToken(saved);
}
