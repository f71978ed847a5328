"""The GraphQL surface of ``contract/schema.graphql``: types, roots, context and errors."""
