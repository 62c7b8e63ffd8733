/**
 * The Jupyter message handler: protocol 5.3 semantics, no sockets. The transport hands it decoded
 * requests and gives it an {@link Outbox} to reply and publish through, so the whole protocol is
 * unit-tested by calling {@link KernelHandler.handle} and reading what was sent.
 */
import { Console } from "node:console";
import type { MimeBundle } from "@mmulab/core/display";
import { type CellError, type Engine, toCellError } from "./engine";
import { bundleOf, DisplayError } from "./helpers";
import { History, type HistoryRequest } from "./history";
import { type DisplayOptions, type KernelSession, setSession } from "./session";
import { KERNEL_VERSION, TS_VERSION } from "./version";
import { type Message, PROTOCOL_VERSION } from "./wire";

/** Where the handler sends messages. Parent is the request being answered. */
export interface Outbox {
  /** Publishes on IOPub. */
  publish(msgType: string, content: object, parent: Message | undefined): void;
  /** Replies on the socket `request` came from. */
  reply(request: Message, msgType: string, content: object): void;
}

/** Channel a request arrived on. */
export type Channel = "shell" | "control";

/** Options of a {@link KernelHandler}. */
export interface HandlerOptions {
  /** Called after shutdown_reply was sent; the transport closes and the process exits. */
  onShutdown?(restart: boolean): void;
  /** Kernel's own diagnostics (not cell output). Default: the real stderr. */
  log?(text: string): void;
}

/**
 * `language_info` of kernel_info_reply. JupyterLab copies it into the notebook's metadata when a
 * notebook connects, so it is exactly what notebooks/tools/build-notebooks.mjs writes (same keys,
 * same order): opening a committed notebook changes nothing. No `codemirror_mode`: JupyterLab 4
 * and classic Notebook both find TypeScript highlighting from the mimetype, name or extension;
 * nbconvert takes the Pygments lexer from `name`. The version is major.minor of the compiler,
 * as the notebooks record it (a patch release changes no language rule).
 */
export const LANGUAGE_INFO = {
  name: "typescript",
  file_extension: ".ts",
  mimetype: "text/typescript",
  version: TS_VERSION.split(".").slice(0, 2).join("."),
};

/**
 * Bytes of one stream (stdout or stderr) a cell may send; the rest is counted, not sent, and the
 * stream says so. IOPub has no flow control: a cell printing without end would otherwise fill the
 * kernel's zeromq queue (memory) and the front end, which keeps a stream output's whole text in
 * the notebook model and in the saved file. 8 MiB is some 80 000 lines of 100 characters.
 */
export const STREAM_LIMIT_BYTES = 8 * 2 ** 20;

/** The longest prefix of `text` whose UTF-8 encoding fits in `maxBytes`, cut between characters. */
export function utf8Prefix(text: string, maxBytes: number): string {
  // A code unit takes at least one byte: more than maxBytes units never fit.
  let head = text.length > maxBytes ? text.slice(0, maxBytes) : text;
  // A lone high surrogate at the cut would encode as U+FFFD.
  const last = head.charCodeAt(head.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) head = head.slice(0, -1);
  const buf = Buffer.from(head, "utf8");
  if (buf.length <= maxBytes) return head;
  let end = maxBytes;
  // UTF-8 continuation bytes are 0b10xxxxxx: step back to the first byte of a character.
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--;
  return buf.subarray(0, end).toString("utf8");
}

/**
 * Buffers one output stream so a loop printing lines becomes few messages, and caps what one
 * cell sends at {@link STREAM_LIMIT_BYTES}: past it, one notice "output truncated after N bytes"
 * in the stream, and at the end of the cell how much was not sent. Never silent.
 */
class StreamBuffer {
  private text = "";
  private scheduled = false;
  /** When text was last sent; only real sends count, so a cell's first line goes out at once. */
  private lastSent = 0;
  /** Bytes of the current cell accepted (sent or buffered) and written past the limit. */
  private accepted = 0;
  private dropped = 0;

  constructor(
    private readonly name: "stdout" | "stderr",
    private readonly send: (name: string, text: string) => void,
  ) {}

  /** A new cell starts: its own budget. */
  startCell(): void {
    this.accepted = 0;
    this.dropped = 0;
  }

  write(chunk: string): void {
    if (this.dropped > 0) {
      this.dropped += Buffer.byteLength(chunk);
      return;
    }
    const bytes = Buffer.byteLength(chunk);
    if (this.accepted + bytes > STREAM_LIMIT_BYTES) {
      const head = utf8Prefix(chunk, STREAM_LIMIT_BYTES - this.accepted);
      const headBytes = Buffer.byteLength(head);
      this.accepted += headBytes;
      this.dropped = bytes - headBytes;
      this.text += `${head}\n[mmulab-kernel] output truncated after ${this.accepted} bytes: the rest of this cell's ${this.name} is not sent (limit ${STREAM_LIMIT_BYTES} bytes per cell)\n`;
      this.flush();
      return;
    }
    this.accepted += bytes;
    this.text += chunk;
    const now = Date.now();
    // A synchronous loop never yields to setImmediate: flush by size and age as well.
    if (this.text.length > 8192 || now - this.lastSent > 50) {
      this.flush();
    } else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  flush(): void {
    if (this.text === "") return;
    this.lastSent = Date.now();
    const text = this.text;
    this.text = "";
    this.send(this.name, text);
  }

  /** The cell ended: flushes, and says how much past the limit was not sent. */
  endCell(): void {
    this.flush();
    if (this.dropped > 0) {
      this.send(
        this.name,
        `[mmulab-kernel] ${this.name}: this cell wrote ${this.accepted + this.dropped} bytes; ${this.dropped} were not sent\n`,
      );
    }
  }
}

/** How long shutdown_request waits for the interrupted cell to answer before the kernel exits. */
const SHUTDOWN_DRAIN_MS = 1000;

/** Converts a code-point offset (Jupyter's cursor_pos) to a UTF-16 offset (TypeScript's). */
export function codePointToUtf16(text: string, cp: number): number {
  let i = 0;
  for (let n = 0; n < cp && i < text.length; n++) i += text.codePointAt(i)! > 0xffff ? 2 : 1;
  return i;
}

/** Converts a UTF-16 offset to a code-point offset. */
export function utf16ToCodePoint(text: string, u: number): number {
  let n = 0;
  for (let i = 0; i < u && i < text.length; n++) i += text.codePointAt(i)! > 0xffff ? 2 : 1;
  return n;
}

/**
 * Handles every request of protocol 5.3. Requests on shell must be handed over one at a time
 * (the transport queues them); control requests may arrive while a cell runs.
 */
export class KernelHandler implements KernelSession {
  private executionCount = 0;
  /** Tail of the shell queue; handleNow never rejects, so the chain never breaks. */
  private shellQueue: Promise<void> = Promise.resolve();
  private parent: Message | undefined;
  private interrupted = false;
  /** Set by shutdown_request: shell requests not yet started are answered, not run. */
  private shuttingDown = false;
  private readonly history = new History();
  private readonly stdout: StreamBuffer;
  private readonly stderr: StreamBuffer;
  private readonly log: (text: string) => void;
  readonly openProgress = new Set<{ finish(state: "done" | "interrupted" | "failed"): void }>();

  constructor(
    private readonly engine: Engine,
    private readonly outbox: Outbox,
    private readonly options: HandlerOptions = {},
  ) {
    const send = (name: string, text: string) =>
      this.outbox.publish("stream", { name, text }, this.parent);
    this.stdout = new StreamBuffer("stdout", send);
    this.stderr = new StreamBuffer("stderr", send);
    const realStderr = process.stderr.write.bind(process.stderr);
    this.log = options.log ?? ((text) => realStderr(`[mmulab-kernel] ${text}\n`));
  }

  /** True from an interrupt until the next cell starts. */
  get interruptRequested(): boolean {
    return this.interrupted;
  }

  /**
   * Routes process.stdout/stderr writes to IOPub stream messages (of the last cell, as IPython
   * does for output printed after a cell finished) and makes this the session the notebook helpers
   * reach. Returns a function undoing both.
   */
  attach(): () => void {
    const out = process.stdout.write;
    const err = process.stderr.write;
    const forward =
      (buffer: StreamBuffer) =>
      (chunk: string | Uint8Array, encoding?: unknown, cb?: unknown): boolean => {
        buffer.write(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
        const callback = typeof encoding === "function" ? encoding : cb;
        if (typeof callback === "function") process.nextTick(callback as () => void);
        return true;
      };
    process.stdout.write = forward(this.stdout) as typeof process.stdout.write;
    process.stderr.write = forward(this.stderr) as typeof process.stderr.write;
    // Cells get a console of their own on the same streams. Node's global console also reports
    // every call to V8's inspector whenever an inspector session is connected (the interrupt
    // watchdog keeps one), and V8 keeps the last calls' arguments: console.log of a 100 MiB
    // string took 19 s and held hundreds of MB, against 2 s for process.stdout.write.
    const globalConsole = globalThis.console;
    globalThis.console = new Console({ stdout: process.stdout, stderr: process.stderr });
    setSession(this);
    return () => {
      this.flushStreams();
      process.stdout.write = out;
      process.stderr.write = err;
      globalThis.console = globalConsole;
      setSession(undefined);
    };
  }

  /** Called on SIGINT or interrupt_request: stops an awaiting cell and flags progress loops. */
  interrupt(): void {
    this.interrupted = true;
    this.engine.interrupt();
  }

  publishDisplay(bundle: MimeBundle, options: DisplayOptions): void {
    this.flushStreams();
    const transient = options.displayId !== undefined ? { display_id: options.displayId } : {};
    const type = options.update ? "update_display_data" : "display_data";
    this.outbox.publish(type, { data: bundle, metadata: {}, transient }, this.parent);
  }

  publishClear(wait: boolean): void {
    this.flushStreams();
    this.outbox.publish("clear_output", { wait }, this.parent);
  }

  private flushStreams(): void {
    this.stdout.flush();
    this.stderr.flush();
  }

  /**
   * Handles one request: busy, the work, the reply, idle. Never throws. Shell requests run one
   * after another in arrival order (a failing cell does not cancel the ones behind it); control
   * requests run at once.
   */
  handle(msg: Message, channel: Channel): Promise<void> {
    if (channel === "control") return this.handleNow(msg, channel);
    this.shellQueue = this.shellQueue.then(() =>
      this.shuttingDown ? this.abort(msg) : this.handleNow(msg, channel),
    );
    return this.shellQueue;
  }

  /**
   * Answers a shell request that arrived or waited while the kernel shuts down, without running
   * it: an error reply (protocol 5.1 deprecated the "aborted" status in favour of "error"), with
   * the current execution count on an execute_reply, between busy and idle as every request.
   */
  private async abort(msg: Message): Promise<void> {
    const type = msg.header.msg_type;
    this.outbox.publish("status", { execution_state: "busy" }, msg);
    if (type.endsWith("_request")) {
      const evalue = `${type} not run: the kernel is shutting down (shutdown_request)`;
      this.outbox.reply(msg, type.replace(/_request$/, "_reply"), {
        status: "error",
        ename: "KernelShutdown",
        evalue,
        traceback: [`KernelShutdown: ${evalue}`],
        ...(type === "execute_request" ? { execution_count: this.executionCount } : {}),
      });
    }
    this.outbox.publish("status", { execution_state: "idle" }, msg);
  }

  private async handleNow(msg: Message, channel: Channel): Promise<void> {
    const type = msg.header.msg_type;
    this.outbox.publish("status", { execution_state: "busy" }, msg);
    try {
      await this.dispatch(msg, channel);
    } catch (e) {
      // The kernel's own failure. Describing it must not throw (the queue would break and every
      // later request go unanswered): toCellError reads nothing unguarded.
      const { error } = toCellError(e);
      this.log(`error handling ${type}: ${error.traceback.join("\n")}`);
      if (type.endsWith("_request")) {
        this.outbox.reply(msg, type.replace(/_request$/, "_reply"), {
          status: "error",
          ename: "KernelError",
          evalue: `${error.ename}: ${error.evalue}`,
          traceback: error.traceback,
        });
      }
    } finally {
      this.flushStreams();
      this.outbox.publish("status", { execution_state: "idle" }, msg);
    }
  }

  private async dispatch(msg: Message, channel: Channel): Promise<void> {
    const c = msg.content as Record<string, unknown>;
    switch (msg.header.msg_type) {
      case "kernel_info_request":
        this.outbox.reply(msg, "kernel_info_reply", {
          status: "ok",
          protocol_version: PROTOCOL_VERSION,
          implementation: "mmulab",
          implementation_version: KERNEL_VERSION,
          language_info: LANGUAGE_INFO,
          banner: `mmulab TypeScript kernel ${KERNEL_VERSION} (tslab engine, TypeScript ${TS_VERSION}, Node ${process.version})`,
          help_links: [],
          debugger: false,
        });
        return;
      case "execute_request":
        await this.execute(msg);
        return;
      case "is_complete_request":
        this.outbox.reply(msg, "is_complete_reply", this.engine.isComplete(String(c.code ?? "")));
        return;
      case "complete_request": {
        const code = String(c.code ?? "");
        const pos = codePointToUtf16(code, Number(c.cursor_pos ?? code.length));
        const r = this.engine.complete(code, pos);
        this.outbox.reply(msg, "complete_reply", {
          status: "ok",
          matches: r.matches,
          cursor_start: utf16ToCodePoint(code, r.start),
          cursor_end: utf16ToCodePoint(code, r.end),
          metadata: {},
        });
        return;
      }
      case "inspect_request": {
        const code = String(c.code ?? "");
        const info = this.engine.inspect(
          code,
          codePointToUtf16(code, Number(c.cursor_pos ?? code.length)),
        );
        this.outbox.reply(msg, "inspect_reply", {
          status: "ok",
          found: info !== undefined,
          data:
            info !== undefined ? { "text/plain": info.plain, "text/markdown": info.markdown } : {},
          metadata: {},
        });
        return;
      }
      case "history_request":
        this.outbox.reply(msg, "history_reply", {
          status: "ok",
          history: this.history.query(c as HistoryRequest),
        });
        return;
      case "comm_info_request":
        this.outbox.reply(msg, "comm_info_reply", { status: "ok", comms: {} });
        return;
      case "comm_open":
        // No comm targets: tell the front end the comm is closed instead of leaving it dangling.
        this.outbox.publish("comm_close", { comm_id: c.comm_id, data: {} }, msg);
        return;
      case "comm_msg":
      case "comm_close":
        return;
      case "interrupt_request":
        this.interrupt();
        this.outbox.reply(msg, "interrupt_reply", { status: "ok" });
        return;
      case "shutdown_request": {
        const restart = c.restart === true;
        // Every request gets its reply before the process goes: the running cell is interrupted
        // and answers as such, the ones queued behind it answer KernelShutdown (ipykernel leaves
        // both unanswered). Bounded: Jupyter's manager sends SIGTERM after half its 5 s wait.
        this.shuttingDown = true;
        this.interrupt();
        // (On shell, the legacy channel, the queue holds this very request: nothing to wait for.)
        if (channel === "control") {
          await Promise.race([
            this.shellQueue,
            new Promise((resolve) => setTimeout(resolve, SHUTDOWN_DRAIN_MS)),
          ]);
        }
        this.outbox.reply(msg, "shutdown_reply", { status: "ok", restart });
        this.outbox.publish("shutdown_reply", { status: "ok", restart }, msg);
        this.options.onShutdown?.(restart);
        return;
      }
      default: {
        const type = msg.header.msg_type;
        this.log(`unsupported message type ${type} on ${channel}`);
        if (type.endsWith("_request")) {
          this.outbox.reply(msg, type.replace(/_request$/, "_reply"), {
            status: "error",
            ename: "UnsupportedRequest",
            evalue: `this kernel does not handle ${type}`,
            traceback: [],
          });
        }
      }
    }
  }

  private async execute(msg: Message): Promise<void> {
    const c = msg.content as Record<string, unknown>;
    const code = String(c.code ?? "");
    const silent = c.silent === true;
    const storeHistory = !silent && c.store_history !== false;
    if (storeHistory) {
      this.executionCount++;
      this.history.record(this.executionCount, code);
    }
    const count = this.executionCount;
    this.parent = msg;
    this.interrupted = false;
    this.stdout.startCell();
    this.stderr.startCell();
    if (!silent) this.outbox.publish("execute_input", { code, execution_count: count }, msg);

    let error: CellError | undefined;
    let interrupted = false;
    try {
      const outcome = await this.engine.execute(code, silent ? "silent" : count);
      this.flushStreams();
      if (!outcome.ok) {
        error = outcome.error;
        interrupted = outcome.interrupted;
      } else if (outcome.hasValue && !silent) {
        try {
          const data = bundleOf(outcome.value);
          this.outbox.publish(
            "execute_result",
            { execution_count: count, data, metadata: {} },
            msg,
          );
          if (storeHistory) this.history.recordOutput(count, String(data["text/plain"]));
        } catch (e) {
          // Building the value's bundle failed: its own display method may throw anything.
          const { error: cause } = toCellError(e);
          error =
            e instanceof DisplayError
              ? { ename: e.name, evalue: e.message, traceback: [`${e.name}: ${e.message}`] }
              : {
                  ename: "DisplayError",
                  evalue: `cannot display the value: ${cause.ename === "Thrown" ? `it threw ${cause.evalue}` : `${cause.ename}: ${cause.evalue}`}`,
                  traceback: cause.traceback,
                };
        }
      }
    } catch (e) {
      // Not the cell's failure but the kernel's: still this request's one reply, with its count.
      const { error: cause } = toCellError(e);
      this.log(`error executing cell ${count}: ${cause.traceback.join("\n")}`);
      error = {
        ename: "KernelError",
        evalue: `${cause.ename}: ${cause.evalue}`,
        traceback: cause.traceback,
      };
    }
    this.stdout.endCell();
    this.stderr.endCell();
    // A failed cell leaves no progress bar claiming to run.
    if (error !== undefined) {
      for (const p of [...this.openProgress])
        p.finish(interrupted || this.interrupted ? "interrupted" : "failed");
    }
    if (error !== undefined) {
      if (!silent) this.outbox.publish("error", error, msg);
      this.outbox.reply(msg, "execute_reply", {
        status: "error",
        execution_count: count,
        ...error,
      });
      return;
    }
    this.outbox.reply(msg, "execute_reply", {
      status: "ok",
      execution_count: count,
      payload: [],
      user_expressions: {},
    });
  }
}
