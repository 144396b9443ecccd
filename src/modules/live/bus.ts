import { randomUUID } from "node:crypto";
import { createRedisEventTarget } from "@graphql-yoga/redis-event-target";
import type { Logger } from "../../infra/logger.ts";
import { connectRedis, type RedisClient } from "../../infra/redis.ts";
import type { RedisTarget } from "../../config.ts";
import { liveTopic, type LiveEvent } from "../../infra/live-events.ts";

/**
 * How the processes hear each other's committed changes
 * (docs/live-updates.md): one topic per tenant, through Redis pub/sub
 * (`@graphql-yoga/redis-event-target`, a publish and a subscribe connection
 * per process), or in-process only without Redis.
 *
 * An event published by this process goes to this process's own listener
 * at once, and to Redis for the other replicas, marked with the process's
 * id: the copy Redis sends back is dropped. A local subscriber's delivery
 * does not wait for the round trip through Redis, nor for the event loop to
 * come round to the subscribe connection's socket, which under HTTP load is
 * a whole turn of a busy loop (docs/live-updates.md, "Measured").
 *
 * REDIS_KEY_PREFIX: ioredis prefixes keys, not pub/sub channels, so the
 * topics are prefixed here (`<prefix>t:{<tenantId>}:live`): a deployment
 * hears only its own. The stream slots (the publish connection) get the
 * prefix from ioredis as every key does.
 */

type Target = {
  addEventListener(type: string, listener: (e: Event) => void): void;
  removeEventListener(type: string, listener: (e: Event) => void): void;
  dispatchEvent(e: Event): boolean;
};

export type Listener = (event: LiveEvent) => void;

/** An event on the wire: the process that published it, to drop its own echo. */
type Wire = LiveEvent & { origin?: string };

/** The publish connection's command timeout: the request path's Redis bound (src/infra/store.ts). */
const LIVE_COMMAND_TIMEOUT_MS = 1000;

export class LiveBus {
  /** This process, on the wire. */
  readonly origin = randomUUID();
  /** The publish connection (also used for the stream slots), when there is Redis. */
  readonly client: RedisClient | undefined;
  private readonly connections: RedisClient[] = [];
  private readonly target: Target | undefined;
  private readonly listeners = new Map<string, { own: Listener; remote: (e: Event) => void }>();
  private disconnected = false;
  /** The tenant's channel: the key prefix, then liveTopic. */
  private readonly topic: (tenantId: string) => string;

  /** `onReconnect`: the subscribe connection is back (messages published meanwhile are lost). */
  constructor(
    redis: RedisTarget | undefined,
    private readonly logger: Logger,
    onReconnect: () => void,
    keyPrefix = "",
  ) {
    this.topic = (tenantId) => keyPrefix + liveTopic(tenantId);
    if (!redis) return;
    // A command timeout on the publish connection (it also takes the stream
    // slots): a hung Redis (connections accepted, nothing answered) fails a
    // subscription's opening after it, SERVICE_UNAVAILABLE, instead of
    // holding the subscriber without end (docs/degraded-modes.md).
    const publishClient = connectRedis(redis, { maxRetriesPerRequest: 2, commandTimeout: LIVE_COMMAND_TIMEOUT_MS, keyPrefix });
    const subscribeClient = connectRedis(redis, { maxRetriesPerRequest: null, keyPrefix });
    this.client = publishClient;
    this.connections.push(publishClient, subscribeClient);
    for (const r of this.connections) r.on("error", (err) => logger.warn({ err }, "live updates: Redis error"));
    let connectedOnce = false;
    subscribeClient.on("ready", () => {
      if (connectedOnce) onReconnect();
      connectedOnce = true;
    });
    // The event target neither waits for nor handles its commands: with
    // Redis down or the connection closed, a rejection would be unhandled
    // and end the process. Each is logged instead.
    // - PUBLISH fails with Redis down: the event is lost; the streams
    //   re-check themselves (on reconnect and periodically).
    // - SUBSCRIBE / UNSUBSCRIBE wait through reconnects (no retry limit on
    //   that connection) and fail only once it is closed for good, close().
    const logged = <T>(command: Promise<T>, fallback: T, message: string, fields: object = {}) =>
      command.catch((err: unknown) => {
        logger.warn({ err, ...fields }, message);
        return fallback;
      });
    const publisher = {
      publish: (channel: string, message: string) => logged(publishClient.publish(channel, message), 0, "live updates: event not published"),
    } as unknown as RedisClient;
    const subscriber = {
      on: (event: "message", fn: (channel: string, message: string) => void) => subscribeClient.on(event, fn),
      subscribe: (topic: string) => logged(subscribeClient.subscribe(topic), 0, "live updates: channel not subscribed", { topic }),
      unsubscribe: (topic: string) => logged(subscribeClient.unsubscribe(topic), 0, "live updates: channel not unsubscribed", { topic }),
    } as unknown as RedisClient;
    this.target = createRedisEventTarget({ publishClient: publisher, subscribeClient: subscriber }) as unknown as Target;
  }

  /** Hands the events to this process's listener of the tenant, then to the other replicas. */
  publish(tenantId: string, events: LiveEvent[]): void {
    // After close() the publish connection is gone (its rejection would be unhandled).
    if (this.disconnected) return;
    const own = this.listeners.get(tenantId)?.own;
    for (const event of events) {
      if (own) {
        try {
          own(event);
        } catch (err) {
          // The change is committed: a failed local hand-over must not fail the mutation.
          this.logger.warn({ err, tenantId }, "live updates: local delivery failed");
        }
      }
      const detail: Wire = { ...event, origin: this.origin };
      this.target?.dispatchEvent(new CustomEvent(this.topic(tenantId), { detail }));
    }
  }

  /** Starts hearing the tenant's events (one listener per tenant). */
  listen(tenantId: string, own: Listener): void {
    const remote = (e: Event) => {
      const wire = (e as CustomEvent<Wire | null>).detail;
      if (!wire || typeof wire !== "object" || wire.origin === this.origin) return;
      const { origin: _origin, ...event } = wire;
      own(event as LiveEvent);
    };
    this.listeners.set(tenantId, { own, remote });
    this.target?.addEventListener(this.topic(tenantId), remote);
  }

  unlisten(tenantId: string): void {
    const l = this.listeners.get(tenantId);
    if (!l) return;
    this.listeners.delete(tenantId);
    this.target?.removeEventListener(this.topic(tenantId), l.remote);
  }

  close(): void {
    this.disconnected = true;
    for (const r of this.connections) r.disconnect();
  }
}
