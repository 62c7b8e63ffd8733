/**
 * What a VM was configured as (`vm.config`: every switch's effective value and where it came
 * from) and the era presets side by side (`presetTable()`), as notebook tables.
 */
import { htmlTableBundle, JUPYTER_DISPLAY, type MimeBundle } from "../display";
import { SWITCHES, type SwitchName } from "../era/features";
import { PRESETS, type PresetName } from "../era/presets";
import { InvalidArgumentError } from "../errors";
import type { KvmX86, SwitchSource } from "../x86/x86";

/** One switch of {@link VmConfig}. */
export interface ConfigEntry {
  name: SwitchName;
  value: unknown;
  source: SwitchSource;
}

/** A VM's configuration: MMU, preset, and each switch with its value and source. */
export class VmConfig {
  readonly mmu: string;
  readonly preset: PresetName | null;
  readonly switches: readonly ConfigEntry[];

  constructor(vm: KvmX86) {
    this.mmu = vm.mmuMode;
    this.preset = vm.preset;
    const f = vm.features as Readonly<Record<string, unknown>>;
    this.switches = (Object.keys(SWITCHES) as SwitchName[]).map((name) => ({
      name,
      value: f[name],
      source: vm.switchSources[name] ?? "default",
    }));
  }

  /** The value and source of one switch. */
  get(name: SwitchName): ConfigEntry | undefined {
    if (typeof name !== "string") throw new InvalidArgumentError("name", name, "a switch name");
    return this.switches.find((e) => e.name === name);
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    const title = `VM configuration: mmu ${this.mmu}${this.preset ? `, preset ${this.preset}` : ""}`;
    return htmlTableBundle(
      title,
      this.switches.map((e) => ({ switch: e.name, value: String(e.value), source: e.source })),
    );
  }
}

/** Every preset and what it sets, for a notebook (`presetTable()`). */
export class PresetTable {
  readonly rows: readonly Record<string, string>[];

  constructor() {
    this.rows = (Object.keys(PRESETS) as PresetName[]).map((name) => {
      const p = PRESETS[name];
      const row: Record<string, string> = { preset: name, release: p.release, mmu: p.mmu };
      const f = p.features as Readonly<Record<string, unknown>>;
      for (const k of Object.keys(SWITCHES) as SwitchName[]) {
        if (SWITCHES[k].kind !== "kvm") continue;
        row[k] = k in f ? String(f[k]) : "·";
      }
      row.commits = p.commits;
      return row;
    });
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    return htmlTableBundle("Era presets (· = the default)", this.rows);
  }
}

/** The table of era presets and the switches each sets. */
export function presetTable(): PresetTable {
  return new PresetTable();
}
