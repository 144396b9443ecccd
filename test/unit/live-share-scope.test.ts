import { parse } from "graphql";
import { describe, expect, it } from "vitest";
import { LIVE_SUBSCRIPTION } from "../../bench/live.ts";
import { shareScope } from "../../src/http/use-live-delivery.ts";
import { schema } from "../../src/schema.ts";

/**
 * What a subscription document's answer may depend on besides the tenant's
 * rows (src/http/use-live-delivery.ts, docs/live-updates.md "Eighth
 * round"), on the real schema: the role and the caller join the key of the
 * class whose subscribers share an event's execution. The integration side
 * is test/integration/live-shared.test.ts.
 */

const scope = (text: string) => shareScope(schema, parse(text));

describe("live classes: who a subscription's answer depends on", () => {
  it("fields at the lowest role that reach no User depend on neither (the bench's subscription)", () => {
    expect(scope(LIVE_SUBSCRIPTION)).toEqual({ role: false, caller: false });
    expect(scope(`subscription { workflowUpdated { id name project { slug deploymentCount } } }`)).toEqual({ role: false, caller: false });
    expect(scope(`subscription($p: ID) { deploymentUpdated(projectId: $p) { ...D } } fragment D on Deployment { status project { name } }`)).toEqual({ role: false, caller: false });
  });

  it("a selection reaching a User keeps the caller (and the role), whichever way it gets there", () => {
    expect(scope(`subscription { deploymentUpdated { id createdBy { email } } }`)).toEqual({ role: true, caller: true });
    expect(scope(`subscription { deploymentUpdated { project { latestDeployment { createdBy { id } } } } }`)).toEqual({ role: true, caller: true });
    expect(scope(`subscription { deploymentUpdated { ...C } } fragment C on Deployment { createdBy { name } }`)).toEqual({ role: true, caller: true });
  });

  it("a field above the lowest role keeps the role", () => {
    expect(scope(`subscription { auditLogAppended { id action } }`)).toEqual({ role: true, caller: false });
  });

  it("a field the schema does not know keeps both", () => {
    expect(scope(`subscription { deploymentUpdated { id nope } }`)).toEqual({ role: true, caller: true });
  });
});
