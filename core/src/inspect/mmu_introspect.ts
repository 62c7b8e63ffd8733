/**
 * Views of the VM's MMU for notebooks and renderers (never used on hot paths): the TDP tree as a
 * bounded, folded snapshot conforming to display.v1 `definitions.tree` (kind "tdp"), a gpa walk
 * through the TDP tables with a per-level trace, and the list of shadow pages with decoded roles.
 * Each result object implements `[Symbol.for("Jupyter.display")]()`.
 */
import { hexNum } from "../arch/addr";
import { LEVEL_NAMES } from "../arch/constants";
import {
  type Entry,
  type Flag,
  htmlTableBundle,
  JUPYTER_DISPLAY,
  type LevelName,
  type MimeBundle,
  type PageSize,
  type PagetablePayload,
  pagetableBundle,
  type Table,
  type Tree,
  type WalkPayload,
  walkBundle,
} from "../display";
import type { VmMmu } from "../mmu/mmu";
import {
  type DecodedRole,
  decodeRole,
  kvmMmuPageGetGfn,
  ROLE_DIRECT,
  roleLevel,
  SP_TDP,
  SP_TRANSLATION_ACCOUNTED,
} from "../mmu/mmu_internal";
import { gfnWriteTrackCount } from "../mmu/page_track";
import {
  GFN_SPAN,
  isLastSpte,
  isMmioSpte,
  isShadowPresent,
  mmioSpteGfn,
  spteFlags,
  spteHexLayout,
  spteIndex,
  sptePfn,
} from "../mmu/spte";
import { LeafRunFolder } from "./snapshot_fold";

const PAGE_SIZE_OF: readonly number[] = [0, 4096, 2097152, 1073741824];
const hex = hexNum;

/** Bounds of a tree snapshot. */
export interface TdpSnapshotOptions {
  /** Entries (after folding) kept per table; the rest are counted in `omitted` (default 16). */
  maxEntriesPerTable?: number;
  /** Tables expanded in total, breadth of the tree first (default 64). */
  maxTables?: number;
  /** Root to show (default: the first valid root). */
  root?: number;
  /** Title of the view and label of its tree (default: the root it shows). */
  title?: string;
  /** Alias of `title` (its first name here; the guest snapshot took `title`). */
  label?: string;
}

function schemaRole(r: DecodedRole): Table["role"] {
  return {
    word: r.word,
    level: r.level,
    direct: r.direct,
    access: r.access,
    quadrant: r.quadrant,
    invalid: r.invalid,
    hasFourByteGpte: r.hasFourByteGpte,
    cr0Wp: r.cr0Wp,
    eferNx: r.eferNx,
    adDisabled: r.adDisabled,
    guestMode: r.guestMode,
    smm: r.smm,
  } as Table["role"];
}

/** What a shadow page is, in words, for the entry that links it (shadow trees). */
function shadowPageNote(mmu: VmMmu, sp: number): string {
  const store = mmu.store;
  const parts = [
    `${(store.role[sp]! & ROLE_DIRECT) !== 0 ? "direct" : "indirect"} sp ${sp}, gfn ${hex(store.gfn[sp]!)}`,
  ];
  const slot = mmu.slots.gfnToSlot(store.gfn[sp]!);
  if ((store.role[sp]! & ROLE_DIRECT) === 0 && slot !== undefined) {
    const n = gfnWriteTrackCount(slot, store.gfn[sp]!);
    if (n > 0) parts.push(`write-tracked (${n})`);
    else parts.push("write-protected");
  }
  if (store.unsync[sp] !== 0) parts.push("unsync");
  if (store.unsyncChildren[sp]! > 0) parts.push(`unsync children ${store.unsyncChildren[sp]}`);
  if (store.flood[sp]! > 0) parts.push(`write flooding ${store.flood[sp]}`);
  return parts.join(", ");
}

/**
 * The TDP tree — or, under shadow paging, a vCPU's shadow tree (kind "shadow": indexed by gva,
 * values in the x86 spte layout KVM uses without EPT, each linked page described by the entry
 * that links it: indirect or direct, write-tracked, unsync, flooding count) — as display.v1
 * `tree` JSON: absent entries omitted, runs of alike leaves folded (same flags, consecutive
 * frames), at most `maxEntriesPerTable` entries per table and `maxTables` tables expanded; what
 * was left out is counted in each table's `omitted`.
 */
export function tdpTreeSnapshot(
  mmu: VmMmu,
  opts: TdpSnapshotOptions = {},
): Tree & { truncated: boolean } {
  const maxEntries = opts.maxEntriesPerTable ?? 16;
  let tablesLeft = opts.maxTables ?? 64;
  let truncated = false;
  const store = mmu.store;
  const shadow = mmu.shadowPaging;
  const root = opts.root ?? mmu.firstValidRoot();
  const rootLevel = root === undefined || !shadow ? mmu.rootLevel : roleLevel(store.role[root]!);
  const format = shadow ? "shadow" : rootLevel === 5 ? "tdp-5" : "tdp-4";
  const emptyRoot: Table = {
    level: rootLevel,
    name: LEVEL_NAMES[rootLevel]!,
    size: 512,
    present: 0,
    entries: [],
  };
  if (root === undefined) {
    return {
      kind: shadow ? "shadow" : "tdp",
      format,
      label:
        opts.title ??
        opts.label ??
        (shadow ? "shadow MMU (no root loaded)" : "TDP (no root loaded)"),
      root: emptyRoot,
      truncated,
    };
  }
  // Shadow trees are indexed by gva: the upper half of a canonical address is sign-extended.
  const vaOf = (pageNumber: number): string => {
    if (!shadow) return hex(pageNumber * 4096);
    let v = BigInt(pageNumber) << 12n;
    const top = BigInt(12 + 9 * rootLevel - 1);
    if ((v >> top) & 1n) v |= ((1n << 64n) - 1n) ^ ((1n << (top + 1n)) - 1n);
    return `0x${v.toString(16)}`;
  };

  // Breadth-first so that a bounded snapshot shows the top of the tree first.
  const queue: { sp: number; table: Table; base: number }[] = [];
  const tableOf = (sp: number): Table => {
    const level = roleLevel(store.role[sp]!);
    return {
      level,
      name: LEVEL_NAMES[level]!,
      addr: hex(store.spPfn(sp) * 4096),
      gfn: hex(store.gfn[sp]!),
      role: schemaRole(decodeRole(store.role[sp]!)),
      spId: sp,
      size: 512,
      present: 0,
      entries: [],
    };
  };
  const top = tableOf(root);
  tablesLeft--;
  queue.push({ sp: root, table: top, base: 0 });
  while (queue.length > 0) {
    const { sp, table, base } = queue.shift()!;
    const spt = store.spt[sp]!;
    const level = table.level;
    const span = GFN_SPAN[level]!;
    let present = 0;
    let omitted = 0;
    const runs = new LeafRunFolder();
    for (let i = 0; i < 512; i++) {
      const lo = spt[i * 2]!;
      const hi = spt[i * 2 + 1]!;
      if (lo === 0 && hi === 0) {
        runs.close();
        continue;
      }
      const mmio = isMmioSpte(lo);
      if (!mmio && !isShadowPresent(lo)) continue;
      if (!mmio) present++;
      const leaf = mmio || isLastSpte(lo, level);
      const pfn = mmio ? mmioSpteGfn(lo, hi) : sptePfn(lo, hi);
      const e: Entry = {
        index: i,
        value: spteHexLayout(lo, hi, shadow, mmu.spteLayout),
        flags: spteFlags(lo, hi, level) as Flag[],
        leaf,
        target: hex(pfn),
        va: vaOf(base + i * span),
      };
      if (leaf && !mmio && level <= 3) e.pageSize = PAGE_SIZE_OF[level] as PageSize;
      if (mmio) e.note = "MMIO spte";
      else if (shadow && leaf) e.note = `gfn ${hex(kvmMmuPageGetGfn(store, sp, i, false))}`;
      else if (shadow) {
        const child = store.pfnToSp(pfn);
        e.note = shadowPageNote(mmu, child);
        if (store.unsync[child] !== 0 || store.unsyncChildren[child]! > 0) e.flags.push("unsync");
      }
      if (runs.fold(e, pfn)) continue;
      if (table.entries.length >= maxEntries) {
        omitted++;
        truncated = true;
        runs.close();
        continue;
      }
      table.entries.push(e);
      runs.open(e, pfn, mmio ? 1 : span);
      if (!leaf) {
        const child = store.pfnToSp(pfn);
        if (tablesLeft > 0 && store.isLive(child)) {
          tablesLeft--;
          const ct = tableOf(child);
          e.child = ct;
          queue.push({ sp: child, table: ct, base: base + i * span });
        } else {
          truncated = true;
          e.note = `${e.note ? `${e.note}; ` : ""}table sp ${child} not expanded`;
        }
      }
    }
    table.present = present;
    if (omitted > 0) table.omitted = omitted;
  }
  return {
    kind: shadow ? "shadow" : "tdp",
    format,
    label:
      opts.title ??
      opts.label ??
      (shadow
        ? `shadow root ${shadowPageNote(mmu, root)} (${rootLevel}-level guest)`
        : `TDP root sp ${root} (${mmu.rootLevel}-level EPT)`),
    root: top,
    truncated,
  };
}

/** A pagetable display payload around a TDP snapshot (validates against display.v1). */
export class TdpTreeView {
  readonly tree: Tree;
  readonly truncated: boolean;
  /** The title given to the snapshot (`title` or its alias `label`), if any. */
  readonly title: string | undefined;
  constructor(mmu: VmMmu, opts: TdpSnapshotOptions = {}) {
    const { truncated, ...tree } = tdpTreeSnapshot(mmu, opts);
    this.tree = tree;
    this.truncated = truncated;
    this.title = opts.title ?? opts.label;
  }
  /** display.v1 `pagetable` payload. */
  payload(): PagetablePayload {
    return {
      version: 1,
      kind: "pagetable",
      title: this.title ?? (this.tree.kind === "shadow" ? "shadow MMU (ept=0)" : "TDP MMU"),
      trees: [this.tree],
      truncated: this.truncated,
    };
  }
  [JUPYTER_DISPLAY](): MimeBundle {
    return pagetableBundle(this.payload());
  }
}

/** One level of a TDP walk. */
export interface TdpWalkStep {
  level: number;
  name: LevelName;
  sp: number;
  index: number;
  /** Host-physical address of the spte. */
  sptepHpa: number;
  spte: string;
  /** The spte's low and high words as stored (for views that compare two walks). */
  lo: number;
  hi: number;
  flags: string[];
  leaf: boolean;
}

/** A gpa walk through the TDP tables, without side effects (no faults, no A/D). */
export class TdpWalk {
  readonly gpa: number;
  readonly steps: TdpWalkStep[] = [];
  /** Host frame reached (4K frame of the gpa), or -1 if the walk stopped early. */
  readonly pfn: number;
  /** Size of the mapping reached (bytes), 0 if none. */
  readonly pageSize: number;
  /** Why the walk stopped ("mapped", "not present", "mmio"). */
  readonly outcome: "mapped" | "not present" | "mmio";

  constructor(mmu: VmMmu, gpa: number, root?: number) {
    this.gpa = gpa;
    const store = mmu.store;
    const gfn = Math.floor(gpa / 4096);
    let sp = root ?? mmu.firstValidRoot() ?? -1;
    let level = mmu.rootLevel;
    let pfn = -1;
    let size = 0;
    let outcome: TdpWalk["outcome"] = "not present";
    while (sp >= 0) {
      const idx = spteIndex(gfn, level);
      const lo = store.spt[sp]![idx * 2]!;
      const hi = store.spt[sp]![idx * 2 + 1]!;
      const leaf = isMmioSpte(lo) || (isShadowPresent(lo) && isLastSpte(lo, level));
      this.steps.push({
        level,
        name: LEVEL_NAMES[level]!,
        sp,
        index: idx,
        sptepHpa: store.spPfn(sp) * 4096 + idx * 8,
        spte: spteHexLayout(lo, hi, false, mmu.spteLayout),
        lo,
        hi,
        flags: spteFlags(lo, hi, level),
        leaf,
      });
      if (isMmioSpte(lo)) {
        outcome = "mmio";
        break;
      }
      if (!isShadowPresent(lo)) break;
      if (leaf) {
        pfn = sptePfn(lo, hi) + (gfn % GFN_SPAN[level]!);
        size = PAGE_SIZE_OF[level]!;
        outcome = "mapped";
        break;
      }
      sp = store.pfnToSp(sptePfn(lo, hi));
      level--;
    }
    this.pfn = pfn;
    this.pageSize = size;
    this.outcome = outcome;
  }

  /** display.v1 `walk` payload: the gpa in the address field, hpa of each spte as entry address. */
  payload(): WalkPayload {
    const levels = this.steps.map((s) => ({
      level: s.level,
      name: s.name,
      index: s.index,
      pteGpa: hex(s.sptepHpa),
      before: s.spte,
      after: s.spte,
      flags: s.flags as Flag[],
      leaf: s.leaf,
      note: `sp ${s.sp}`,
    }));
    const result: WalkPayload["result"] =
      this.outcome === "not present"
        ? { fault: true, vector: 14, errorCode: 0, reason: "EPT violation: entry not present" }
        : {
            fault: false,
            gpa: hex(this.pfn >= 0 ? this.pfn * 4096 + (this.gpa % 4096) : this.gpa),
            mmio: this.outcome === "mmio",
            ...(this.pageSize ? { pageSize: this.pageSize as PageSize } : {}),
          };
    return {
      version: 1,
      kind: "walk",
      mode: this.steps.length > 0 && this.steps[0]!.level === 5 ? "5-level" : "4-level",
      gva: hex(this.gpa),
      access: { write: false, user: false, fetch: false },
      levels,
      result,
    } as WalkPayload;
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    return walkBundle(this.payload());
  }
}

/** One shadow page as listed for notebooks. */
export interface ShadowPageInfo {
  id: number;
  gfn: number;
  role: DecodedRole;
  level: number;
  direct: boolean;
  tdp: boolean;
  root: boolean;
  rootCount: number;
  /** The first parent entry (TDP: the one; rmap MMU: the first of `parent_ptes`), or null. */
  parent: { sp: number; index: number } | null;
  /** Every parent entry (`parent_ptes`; one at most for TDP pages). */
  parents: { sp: number; index: number }[];
  /** Shadow paging: `unsync`, `unsync_children`, `write_flooding_count`, and the gfn's write-track count. */
  unsync: boolean;
  unsyncChildren: number;
  writeFlooding: number;
  writeTracked: number;
  present: number;
  leaves: number;
  hasTranslationArray: boolean;
  translationAccounted: boolean;
}

/** Every live shadow page with its decoded role, in id order. */
export class ShadowPageList {
  readonly pages: ShadowPageInfo[] = [];
  constructor(mmu: VmMmu) {
    const store = mmu.store;
    const roots = new Set(mmu.roots);
    for (let sp = 0; sp < store.created; sp++) {
      if (!store.isLive(sp)) continue;
      const role = store.role[sp]!;
      const level = roleLevel(role);
      const spt = store.spt[sp]!;
      let present = 0;
      let leaves = 0;
      for (let i = 0; i < 512; i++) {
        const lo = spt[i * 2]!;
        if (!isShadowPresent(lo)) continue;
        present++;
        if (isLastSpte(lo, level)) leaves++;
      }
      const d = decodeRole(role);
      const parents =
        mmu.shadow !== null
          ? mmu.shadow.parentPtesOf(sp).map((p) => ({ sp: Math.floor(p / 512), index: p % 512 }))
          : store.parentSp[sp]! >= 0
            ? [{ sp: store.parentSp[sp]!, index: store.parentIdx[sp]! }]
            : [];
      const slot = mmu.slots.gfnToSlot(store.gfn[sp]!);
      this.pages.push({
        id: sp,
        gfn: store.gfn[sp]!,
        role: d,
        level,
        direct: d.direct,
        tdp: (store.flags[sp]! & SP_TDP) !== 0,
        root: roots.has(sp),
        rootCount: store.rootCount[sp]!,
        parent: parents[0] ?? null,
        parents,
        unsync: store.unsync[sp] !== 0,
        unsyncChildren: store.unsyncChildren[sp]!,
        writeFlooding: store.flood[sp]!,
        writeTracked:
          mmu.shadowPaging && !d.direct && slot !== undefined
            ? gfnWriteTrackCount(slot, store.gfn[sp]!)
            : 0,
        present,
        leaves,
        hasTranslationArray: store.translation[sp] != null,
        translationAccounted: (store.flags[sp]! & SP_TRANSLATION_ACCOUNTED) !== 0,
      });
    }
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    const rows = this.pages.slice(0, 200).map((p) => ({
      id: p.id,
      gfn: hex(p.gfn),
      level: p.level,
      role: p.role.word,
      direct: p.direct,
      access: p.role.access,
      invalid: p.role.invalid,
      root: p.root ? `root (${p.rootCount})` : "",
      parent: p.parents.map((q) => `sp ${q.sp}[${q.index}]`).join(" "),
      present: p.present,
      unsync: p.unsync ? "unsync" : p.unsyncChildren > 0 ? `children ${p.unsyncChildren}` : "",
      tracked: p.writeTracked > 0 ? `write-tracked (${p.writeTracked})` : "",
      flooding: p.writeFlooding || "",
      leaves: p.leaves,
      gfns: p.hasTranslationArray ? (p.translationAccounted ? "array" : "self-check") : "computed",
    }));
    const more =
      this.pages.length > rows.length ? ` (first ${rows.length} of ${this.pages.length})` : "";
    return htmlTableBundle(`Shadow pages${more}`, rows);
  }
}
