import { createWriteStream, type WriteStream } from "node:fs";
import path from "node:path";
import { startChild, waitReady, type Child } from "../bench/processes.ts";

/**
 * One replica of the server (`src/server.ts` with npm start's V8 flags, as
 * bench/processes.ts runs it), its output appended to a log file, and the
 * bookkeeping a rolling restart needs: whether the load balancer sends it
 * requests, how many are in flight, and what SIGTERM did.
 */

export interface StopFigures {
  replica: string;
  inFlightAtSignal: number;
  exitMs: number;
  exitCode: number | null;
  signal: string | null;
  /** Still running after the drain time + 10 s: killed with SIGKILL. */
  forced: boolean;
}

export class Replica {
  child: Child | undefined;
  /** The load balancer sends it requests (false from SIGTERM until ready again). */
  inRotation = false;
  inFlight = 0;
  /** Incremented at each SIGTERM: a request tagged with an older generation was sent before it. */
  generation = 0;
  /** performance.now() of the last SIGTERM. */
  signalledAt = -Infinity;
  private log: WriteStream;
  /** Lines of its output with ioredis's unhandled-error complaint. */
  unhandledErrorLines = 0;
  starts = 0;

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly env: Record<string, string>,
    logDir: string,
  ) {
    this.log = createWriteStream(path.join(logDir, `${name}.log`), { flags: "a" });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= 5; attempt++) {
      const child = startChild(this.name, "src/server.ts", this.port, this.env);
      this.starts++;
      const tee = (buf: Buffer) => {
        const text = buf.toString("utf8");
        this.log.write(text);
        this.unhandledErrorLines += text.split("Unhandled error event").length - 1;
      };
      child.proc.stdout!.on("data", tee);
      child.proc.stderr!.on("data", tee);
      this.child = child;
      try {
        await waitReady(child, 60_000);
        this.inRotation = true;
        return;
      } catch (err) {
        lastError = err;
        this.log.write(`\n[chaos] start attempt ${attempt} failed: ${String(err).slice(0, 500)}\n`);
        await child.stop();
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
    throw lastError;
  }

  /** SIGTERM (out of rotation at the same moment), then wait for the exit; SIGKILL after drainMs + 10 s. */
  async sigterm(drainMs: number): Promise<StopFigures> {
    const child = this.child!;
    const proc = child.proc;
    this.inRotation = false;
    this.generation++;
    const t0 = performance.now();
    this.signalledAt = t0;
    const inFlightAtSignal = this.inFlight;
    const exited = new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve();
      else proc.once("exit", () => resolve());
    });
    proc.kill("SIGTERM");
    let forced = false;
    const timer = setTimeout(() => {
      forced = true;
      proc.kill("SIGKILL");
    }, drainMs + 10_000);
    await exited;
    clearTimeout(timer);
    this.log.write(`\n[chaos] exited after SIGTERM: code ${proc.exitCode} signal ${proc.signalCode}\n`);
    return {
      replica: this.name,
      inFlightAtSignal,
      exitMs: Math.round(performance.now() - t0),
      exitCode: proc.exitCode,
      signal: proc.signalCode,
      forced,
    };
  }

  async stop(): Promise<void> {
    this.inRotation = false;
    await this.child?.stop();
    this.log.end();
  }
}
