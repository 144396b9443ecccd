import { BlockList, isIP } from "node:net";
import type { Plugin } from "graphql-yoga";
import type { TrustProxy } from "../config/trust-proxy.ts";
import { stateOf } from "./request-state.ts";

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) is 10.0.0.1. */
function normalize(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address.toLowerCase();
}

/** Decides, hop by hop, whether an address is one of our proxies. */
export function proxyTrust(trust: TrustProxy): (address: string, hop: number) => boolean {
  switch (trust.kind) {
    case "off":
      return () => false;
    case "hops":
      return (_address, hop) => hop < trust.hops;
    case "addresses": {
      const list = new BlockList();
      for (const r of trust.ranges) list.addSubnet(r.address, r.prefix, r.family);
      return (address) => {
        const family = isIP(address);
        return family !== 0 && list.check(address, family === 4 ? "ipv4" : "ipv6");
      };
    }
  }
}

/**
 * The client's address: the socket's peer, unless that peer is a trusted
 * proxy, in which case the hop it names in `X-Forwarded-For` (the last
 * entry; each proxy appends the address it saw), and so on while the hop is
 * itself trusted. An entry that is not an IP address ends the walk at the
 * proxy that forwarded it: what reaches the audit log is always an address
 * seen on a socket or vouched for by a trusted proxy, never free text.
 */
export function clientAddress(
  peer: string | null | undefined,
  forwardedFor: string | null,
  trusted: (address: string, hop: number) => boolean,
): string | null {
  if (!peer) return null;
  let client = normalize(peer);
  const hops = forwardedFor ? forwardedFor.split(",").map((h) => h.trim()).reverse() : [];
  for (let i = 0; i < hops.length && trusted(client, i); i++) {
    const next = normalize(hops[i]!);
    if (isIP(next) === 0) break;
    client = next;
  }
  return client;
}

export interface ClientAddressOptions {
  /** Which peers' X-Forwarded-For to believe. @default { kind: "off" } */
  trustProxy?: TrustProxy;
}

/**
 * Records the client address (src/http/request-state.ts) as the request
 * arrives, from the socket (Node's `req` in Yoga's server context; requests
 * handed to `app.fetch` have none: null) and `X-Forwarded-For` as far as
 * TRUST_PROXY allows. The context and the audit entries read it from there.
 */
export function useClientAddress(options: ClientAddressOptions = {}): Plugin {
  const trusted = proxyTrust(options.trustProxy ?? { kind: "off" });
  return {
    onRequest({ request, serverContext }) {
      const peer = (serverContext as { req?: { socket?: { remoteAddress?: string } } } | undefined)?.req?.socket?.remoteAddress;
      stateOf(request).ip = clientAddress(peer, request.headers.get("x-forwarded-for"), trusted);
    },
  };
}
