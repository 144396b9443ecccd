import type { GraphiQLOptions } from "graphql-yoga";

/**
 * What a developer sees on opening GraphiQL: the dashboard query, a
 * paginated list and a mutation, with a headers template for the demo
 * tenant (the token is printed by `npm start` and `npm run token`).
 *
 * GRAPHIQL_OPERATIONS is, character for character, the text of
 * test/operations/graphiql-examples.graphql, which codegen turns into typed
 * documents (DashboardDocument, ...) that the tests send; a test keeps the
 * two equal. The copy lives here so the server never reads from test/.
 */
export const GRAPHIQL_OPERATIONS = `# The dashboard: projects with their latest deployments, in a constant number
# of SQL statements however many projects there are.
query Dashboard($first: Int = 20) {
  tenant {
    slug
    name
    plan
  }
  projects(first: $first) {
    totalCount
    edges {
      node {
        id
        name
        deploymentCount
        latestDeployment {
          status
        }
        deployments(first: 5) {
          edges {
            node {
              status
              createdAt
              createdBy {
                email
              }
            }
          }
        }
      }
    }
  }
}

# A paginated list: pass pageInfo.endCursor as $after for the next page.
query DeploymentsPage($first: Int = 10, $after: String, $status: [DeploymentStatus!] = [READY, ERROR]) {
  deployments(first: $first, after: $after, filter: { status: $status }) {
    totalCount
    pageInfo {
      hasNextPage
      endCursor
    }
    edges {
      cursor
      node {
        id
        status
        branch
        project {
          name
        }
      }
    }
  }
}

# A mutation (DEVELOPER or above; counts against the PROJECTS quota).
mutation CreateProject($name: String! = "My new project", $description: String) {
  createProject(input: { name: $name, description: $description }) {
    project {
      id
      name
      slug
      createdAt
    }
  }
}
`;

export const GRAPHIQL_EXAMPLES = `# Welcome to tenantgraph. Paste a demo token (printed by \`npm start\` and
# \`npm run token\`) into the Authorization header below, then run one of
# these operations.

${GRAPHIQL_OPERATIONS}`;

/** The seeded demo tenant the header template points at. */
export const GRAPHIQL_DEMO_TENANT = "acme";

export const graphiqlOptions: GraphiQLOptions = {
  title: "tenantgraph",
  defaultQuery: GRAPHIQL_EXAMPLES,
  // Yoga hands `headers` to GraphiQL as `defaultHeaders`: the header editor of
  // every new tab starts from this template.
  headers: JSON.stringify({ Authorization: "Bearer <paste a demo token>", "X-Tenant-ID": GRAPHIQL_DEMO_TENANT }, null, 2),
  isHeadersEditorEnabled: true,
  shouldPersistHeaders: true,
};
