/**
 * The zeromq side: binds the five sockets of a connection file, decodes requests, queues shell
 * requests one at a time (a failing cell never drops the ones behind it), handles control requests
 * as they come, echoes heartbeats, and signs everything it sends.
 */

import { randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import * as zmq from "zeromq";
import type { Channel, KernelHandler, Outbox } from "./handler";
import { decode, encode, type Message, makeHeader, type WireError } from "./wire";

/** A Jupyter connection file. */
export interface ConnectionInfo {
  transport: string;
  ip: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
  key: string;
  signature_scheme: string;
  kernel_name?: string;
}

/** Reads and checks a connection file. */
export function readConnectionFile(path: string): ConnectionInfo {
  const info = JSON.parse(readFileSync(path, "utf8")) as ConnectionInfo;
  for (const k of ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"] as const) {
    if (!Number.isInteger(info[k]))
      throw new Error(`connection file ${path}: ${k} must be an integer port, got ${info[k]}`);
  }
  return info;
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/**
 * Writes a connection file on 127.0.0.1 with five free ports, signed with HMAC-SHA256 and `key`,
 * as a Jupyter client would before starting a kernel (used by the wire-level test and the
 * round-trip benchmark). Returns what it wrote.
 */
export async function writeConnectionFile(path: string, key: string): Promise<ConnectionInfo> {
  const info: ConnectionInfo = {
    transport: "tcp",
    ip: "127.0.0.1",
    shell_port: await freePort(),
    iopub_port: await freePort(),
    stdin_port: await freePort(),
    control_port: await freePort(),
    hb_port: await freePort(),
    key,
    signature_scheme: "hmac-sha256",
  };
  writeFileSync(path, JSON.stringify(info));
  return info;
}

/** Sockets bound and serving one handler. */
export class ZmqTransport implements Outbox {
  readonly session = randomUUID();
  private readonly iopub = new zmq.Publisher();
  private readonly shell = new zmq.Router();
  private readonly control = new zmq.Router();
  private readonly stdin = new zmq.Router();
  private readonly hb = new zmq.Reply();
  private handler: KernelHandler | undefined;
  private closed = false;
  /** Requests that came on control, so their replies go back there. */
  private readonly controlIds = new WeakSet<Message>();

  constructor(
    private readonly conn: ConnectionInfo,
    private readonly log: (text: string) => void,
  ) {
    // Replies and outputs must never block the kernel; a publisher drops at its high-water mark.
    this.iopub.sendHighWaterMark = 100000;
    // Every send at once (zmq_msg_send with ZMQ_DONTWAIT). With the default (-1), zeromq.js
    // defers every 512th consecutive send to the event loop and throws EBUSY ("Socket is busy
    // writing") at the next one: a synchronous cell printing or updating a progress bar more
    // than 512 times without yielding would lose its output and its execute_reply.
    for (const s of [this.iopub, this.shell, this.control]) s.sendTimeout = 0;
  }

  private address(port: number): string {
    const { transport, ip } = this.conn;
    return transport === "ipc" ? `ipc://${ip}-${port}` : `${transport}://${ip}:${port}`;
  }

  /** Binds every socket and starts serving `handler`. */
  async start(handler: KernelHandler): Promise<void> {
    this.handler = handler;
    const c = this.conn;
    await Promise.all([
      this.iopub.bind(this.address(c.iopub_port)),
      this.shell.bind(this.address(c.shell_port)),
      this.control.bind(this.address(c.control_port)),
      this.stdin.bind(this.address(c.stdin_port)),
      this.hb.bind(this.address(c.hb_port)),
    ]);
    void this.serve(this.shell, "shell");
    void this.serve(this.control, "control");
    void this.heartbeat();
  }

  private async serve(sock: zmq.Router, channel: Channel): Promise<void> {
    try {
      for await (const frames of sock) {
        let msg: Message;
        try {
          msg = decode(frames, this.conn.key, this.conn.signature_scheme);
        } catch (e) {
          this.log(`dropped ${channel} message: ${(e as WireError).message}`);
          continue;
        }
        const handler = this.handler!;
        if (channel === "control") this.controlIds.add(msg);
        // The handler queues shell requests itself; control requests run at once.
        void handler.handle(msg, channel);
      }
    } catch (e) {
      if (!this.closed) this.log(`${channel} socket failed: ${(e as Error).message}`);
    }
  }

  private async heartbeat(): Promise<void> {
    try {
      for await (const frames of this.hb) await this.hb.send(frames);
    } catch (e) {
      if (!this.closed) this.log(`heartbeat socket failed: ${(e as Error).message}`);
    }
  }

  private send(sock: zmq.Router | zmq.Publisher, frames: Buffer[]): void {
    // Router and Publisher queue immediately; the promise only reports errors.
    sock.send(frames).catch((e: Error) => {
      if (!this.closed) this.log(`send failed: ${e.message}`);
    });
  }

  publish(msgType: string, content: object, parent: Message | undefined): void {
    if (this.closed) return;
    const frames = encode(
      {
        identities: [Buffer.from(`kernel.${this.session}.${msgType}`)],
        header: makeHeader(msgType, this.session),
        parent_header: parent?.header ?? {},
        metadata: {},
        content: content as Record<string, unknown>,
      },
      this.conn.key,
      this.conn.signature_scheme,
    );
    this.send(this.iopub, frames);
  }

  reply(request: Message, msgType: string, content: object): void {
    if (this.closed) return;
    const channelSock = this.socketOf(request);
    const frames = encode(
      {
        identities: request.identities,
        header: makeHeader(msgType, this.session),
        parent_header: request.header,
        metadata: {},
        content: content as Record<string, unknown>,
      },
      this.conn.key,
      this.conn.signature_scheme,
    );
    this.send(channelSock, frames);
  }

  /** Control requests are answered on control, everything else on shell. */
  private socketOf(request: Message): zmq.Router {
    return this.controlIds.has(request) ? this.control : this.shell;
  }

  /** Closes every socket (pending sends are flushed by zeromq's linger). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [this.iopub, this.shell, this.control, this.stdin, this.hb]) s.close();
  }
}
