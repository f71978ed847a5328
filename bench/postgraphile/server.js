// PostGraphile v4 + @graphile/pg-pubsub, configured for production use, serving the bench
// database's `public` schema. The `listen(topic)` subscription relays NOTIFYs on
// `postgraphile:<topic>`; the bench's trigger sends each project change there.
//
// Usage: node server.js PORT DATABASE_URL
"use strict";

const http = require("http");
const { postgraphile, makePluginHook, enhanceHttpServerWithWebSockets } = require("postgraphile");
const PgPubsub = require("@graphile/pg-pubsub").default;

const [port, databaseUrl] = process.argv.slice(2);

const middleware = postgraphile(databaseUrl, "public", {
  pluginHook: makePluginHook([PgPubsub]),
  subscriptions: true,
  simpleSubscriptions: true,
  // Unlimited listeners per topic: 1,000 watchers of one project share one topic.
  subscriptionEventEmitterMaxListeners: 0,
  graphiql: false,
  disableQueryLog: true,
  ignoreRBAC: false,
  retryOnInitFail: false,
  setofFunctionsContainNulls: false,
  dynamicJson: true,
  extendedErrors: [],
});

const server = http.createServer(middleware);
enhanceHttpServerWithWebSockets(server, middleware);
server.listen(Number(port), "127.0.0.1", () => {
  console.log(`postgraphile listening on ${port}`);
});

const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
