/**
 * In-memory input history of this kernel process, answering history_request
 * (`tail`, `range`, `search`). One session (numbered 1); nothing is persisted.
 */

/** One history entry as the protocol sends it: [session, line, input] or [session, line, [input, output]]. */
export type HistoryEntry = [number, number, string] | [number, number, [string, string | null]];

/** The fields of a history_request this kernel reads. */
export interface HistoryRequest {
  output?: boolean;
  hist_access_type?: string;
  session?: number;
  start?: number;
  stop?: number;
  n?: number;
  pattern?: string;
  unique?: boolean;
}

const SESSION = 1;

/** Converts a history glob (`*` any run, `?` one character) to an anchored regular expression. */
function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${body}$`, "s");
}

export class History {
  private readonly inputs: string[] = [];
  private readonly outputs: (string | null)[] = [];

  /** Records cell `line` (its execution count). */
  record(line: number, input: string): void {
    this.inputs[line - 1] = input;
    this.outputs[line - 1] = null;
  }

  /** Records the text/plain result of cell `line`. */
  recordOutput(line: number, text: string): void {
    if (line >= 1 && line <= this.inputs.length) this.outputs[line - 1] = text;
  }

  private entry(line: number, output: boolean): HistoryEntry {
    const input = this.inputs[line - 1] ?? "";
    return output
      ? [SESSION, line, [input, this.outputs[line - 1] ?? null]]
      : [SESSION, line, input];
  }

  /** Answers a history_request; unknown access types give an empty list. */
  query(req: HistoryRequest): HistoryEntry[] {
    const output = req.output === true;
    const lines = this.inputs.map((_v, i) => i + 1).filter((l) => this.inputs[l - 1] !== undefined);
    switch (req.hist_access_type) {
      case "tail": {
        const n = req.n ?? 10;
        return lines.slice(Math.max(0, lines.length - n)).map((l) => this.entry(l, output));
      }
      case "range": {
        if (req.session !== undefined && req.session !== SESSION && req.session !== 0) return [];
        const start = req.start ?? 1;
        const stop = req.stop ?? lines.length + 1;
        return lines.filter((l) => l >= start && l < stop).map((l) => this.entry(l, output));
      }
      case "search": {
        const re = globToRegExp(req.pattern ?? "*");
        let found = lines.filter((l) => re.test(this.inputs[l - 1]!));
        if (req.unique) {
          const seen = new Set<string>();
          found = found.reverse().filter((l) => {
            const key = this.inputs[l - 1]!;
            if (seen.has(key)) return false;
            seen.add(key);
            return true;
          });
          found.reverse();
        }
        if (req.n !== undefined && req.n > 0)
          found = found.slice(Math.max(0, found.length - req.n));
        return found.map((l) => this.entry(l, output));
      }
      default:
        return [];
    }
  }
}
