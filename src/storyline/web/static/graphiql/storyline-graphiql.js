// GraphiQL on Storyline: the globals React, ReactDOM, GraphiQL and GraphiQLPluginExplorer
// come from the vendored files loaded before this one (see manifest.json beside it).
"use strict";

(function () {
  // Queries and mutations go to this page's URL over HTTP, subscriptions to the same URL
  // over a WebSocket (graphql-transport-ws). GraphiQL sends what the Headers pane holds as
  // HTTP headers, and as the WebSocket's connection_init payload, where Storyline reads
  // {"Authorization": "Bearer …"} too.
  const url = window.location.href.split(/[?#]/)[0];
  const subscriptionUrl = url.replace(/^http/, "ws");
  const fetcher = GraphiQL.createFetcher({ url, subscriptionUrl });

  const WELCOME = `# Storyline's GraphiQL.
#
# First paste your token's header into the
# Headers pane below (\`make run\` prints one):
#
#   {"Authorization": "Bearer …"}
#
# Then run (Ctrl-Enter, or the play button):

query Me {
  me {
    balance
  }
}
`;

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultQuery: WELCOME,
      plugins: [GraphiQLPluginExplorer.explorerPlugin()],
      defaultEditorToolsVisibility: "headers",
      isHeadersEditorEnabled: true,
      // The token pasted once is kept (in this browser's localStorage) across reloads.
      shouldPersistHeaders: true,
      inputValueDeprecation: true,
    }),
  );
})();
