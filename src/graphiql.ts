/**
 * What a developer sees on opening GraphiQL: the dashboard query, a
 * paginated list and a mutation, with a headers template for the demo
 * tenant (the token is printed by `npm start` and `npm run token`).
 */
export const GRAPHIQL_EXAMPLES = `# Welcome to tenantgraph. Paste a demo token (printed by \`npm start\`) into
# the Authorization header below, then run one of these operations.

query Dashboard {
  tenant { slug name plan }
  projects(first: 20) {
    totalCount
    edges {
      node {
        id
        name
        deploymentCount
        latestDeployment { status }
        deployments(first: 5) {
          edges { node { status createdAt createdBy { email } } }
        }
      }
    }
  }
}

query DeploymentsPage($after: String) {
  deployments(first: 10, after: $after, filter: { status: [READY, ERROR] }) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id status branch project { name } } }
  }
}

mutation CreateProject {
  createProject(input: { name: "My new project" }) {
    project { id name slug createdAt }
  }
}
`;

export const graphiqlOptions = {
  title: "tenantgraph",
  defaultQuery: GRAPHIQL_EXAMPLES,
  headers: JSON.stringify({ Authorization: "Bearer <paste a demo token>", "X-Tenant-ID": "acme" }, null, 2),
  headerEditorEnabled: true,
  shouldPersistHeaders: true,
};
