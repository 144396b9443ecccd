import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { ConfigError } from "../../src/config/env.ts";
import { clientAddress, proxyTrust } from "../../src/http/use-client-address.ts";

/** Issue 12 point 7: X-Forwarded-For is believed only from the proxies TRUST_PROXY names. */

const trust = (value?: string) => proxyTrust(loadConfig({ TRUST_PROXY: value }).trustProxy);

describe("TRUST_PROXY and CORS_ORIGINS", () => {
  it("default off, no origins", () => {
    const c = loadConfig({});
    expect(c.trustProxy).toEqual({ kind: "off" });
    expect(c.corsOrigins).toEqual([]);
  });

  it("parses hop counts, addresses and CIDRs, and origins", () => {
    expect(loadConfig({ TRUST_PROXY: "2" }).trustProxy).toEqual({ kind: "hops", hops: 2 });
    expect(loadConfig({ TRUST_PROXY: "off" }).trustProxy).toEqual({ kind: "off" });
    expect(loadConfig({ TRUST_PROXY: "10.0.0.0/8, 127.0.0.1, ::1, fd00::/8" }).trustProxy).toEqual({
      kind: "addresses",
      ranges: [
        { address: "10.0.0.0", prefix: 8, family: "ipv4" },
        { address: "127.0.0.1", prefix: 32, family: "ipv4" },
        { address: "::1", prefix: 128, family: "ipv6" },
        { address: "fd00::", prefix: 8, family: "ipv6" },
      ],
    });
    expect(loadConfig({ CORS_ORIGINS: "https://app.example.com, http://localhost:5173" }).corsOrigins).toEqual([
      "https://app.example.com",
      "http://localhost:5173",
    ]);
  });

  it.each([
    ["TRUST_PROXY", "true"],
    ["TRUST_PROXY", "10.0.0.0/33"],
    ["TRUST_PROXY", "proxy.internal"],
    ["TRUST_PROXY", "99"],
    ["CORS_ORIGINS", "app.example.com"],
    ["CORS_ORIGINS", "https://app.example.com/path"],
  ])("%s=%s is a configuration error naming the variable", (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^${name}:`));
  });
});

describe("clientAddress", () => {
  const xff = "<script>alert(1)</script>, 198.51.100.9, 203.0.113.7";

  it("off: the socket address, whatever X-Forwarded-For says", () => {
    expect(clientAddress("192.0.2.1", xff, trust())).toBe("192.0.2.1");
    expect(clientAddress("::ffff:192.0.2.1", "203.0.113.7", trust())).toBe("192.0.2.1");
    expect(clientAddress(undefined, "203.0.113.7", trust())).toBeNull();
  });

  it("a hop count believes that many proxies, counted from the socket", () => {
    expect(clientAddress("10.0.0.2", xff, trust("1"))).toBe("203.0.113.7");
    expect(clientAddress("10.0.0.2", xff, trust("2"))).toBe("198.51.100.9");
    // The third hop would be free text: the walk stops at the last real address.
    expect(clientAddress("10.0.0.2", xff, trust("3"))).toBe("198.51.100.9");
    expect(clientAddress("10.0.0.2", null, trust("1"))).toBe("10.0.0.2");
  });

  it("a list believes only its own addresses, hop by hop", () => {
    const list = trust("10.0.0.0/8, 203.0.113.7");
    expect(clientAddress("10.1.2.3", xff, list)).toBe("198.51.100.9");
    expect(clientAddress("192.0.2.1", xff, list)).toBe("192.0.2.1");
    expect(clientAddress("10.1.2.3", "<script>alert(1)</script>", list)).toBe("10.1.2.3");
    expect(clientAddress("::1", "2001:db8::1", trust("::1"))).toBe("2001:db8::1");
  });
});
