/**
 * TypeScript mirror of `core/schema/display.v1.schema.json` — the ONE payload format shared by
 * core objects, the kernel (which validates before sending) and the lab extension (which
 * validates before rendering). Keep this file and the schema in step: the display tests compile
 * payloads typed here and validate them against the schema.
 *
 * 64-bit values and addresses are lower-case hex strings (`"0x..."`) because JSON numbers lose
 * bits above 2^53.
 */

/** MIME type of a page-table snapshot payload ({@link PagetablePayload}). */
export const PAGETABLE_MIME = "application/vnd.mmulab.pagetable+json";
/** MIME type of a guest-walk trace payload ({@link WalkPayload}). */
export const WALK_MIME = "application/vnd.mmulab.walk+json";
/** MIME type of a two-dimensional (guest × EPT) walk payload ({@link Walk2dPayload}). */
export const WALK2D_MIME = "application/vnd.mmulab.walk2d+json";
/** MIME type of a plotly figure (rendered by JupyterLab's plotly renderer or ours). */
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";
/** Version of the display schema this code writes and accepts. */
export const DISPLAY_SCHEMA_VERSION = 1;

/** Lower-case hex string `0x` + 1..16 hex digits. */
export type Hex = string;

/** Every entry state of the schema's `definitions.flag` enum, in schema order. */
export const FLAGS = [
  "present",
  "writable",
  "user",
  "accessed",
  "dirty",
  "nx",
  "exec",
  "huge",
  "global",
  "pkey",
  "mmio",
  "host-writable",
  "mmu-writable",
  "write-protected",
  "unsync",
  "access-tracked",
  "reserved",
] as const;

/** Entry state, for colouring (schema `definitions.flag`). */
export type Flag = (typeof FLAGS)[number];

/** Table names of the schema (`table.name`, `walkLevel.name`). */
export const TABLE_NAMES = ["PML5", "PML4", "PDPT", "PD", "PT", "PDPTR"] as const;
/** Name of a paging level's table. */
export type LevelName = (typeof TABLE_NAMES)[number];

/** Page sizes of the schema (`entry.pageSize`, walk `result.pageSize`). */
export const PAGE_SIZES = [4096, 2097152, 4194304, 1073741824] as const;
/** Page sizes an entry may map. */
export type PageSize = (typeof PAGE_SIZES)[number];

/** Decoded kvm_mmu_page_role of a shadow page (TDP/shadow trees only). */
export interface Role {
  word?: Hex;
  /** 1..5 */
  level: number;
  direct: boolean;
  /** ACC_* bits, 0..7 */
  access?: number;
  /** 0..3 */
  quadrant?: number;
  invalid?: boolean;
  hasFourByteGpte?: boolean;
  cr0Wp?: boolean;
  eferNx?: boolean;
  adDisabled?: boolean;
  guestMode?: boolean;
  /** 0..255 */
  smm?: number;
}

/**
 * One entry of a table, or a folded run of `count` alike entries starting at `index`.
 * Absent (zero) entries are omitted and shown folded by the renderer.
 */
export interface Entry {
  /** 0..1023 */
  index: number;
  /** 1..1024; > 1 for a folded run */
  count?: number;
  value: Hex;
  /** unique, at most 20 */
  flags: Flag[];
  leaf: boolean;
  /** gfn (guest tree) or pfn (TDP/shadow tree) the first entry of the run points at */
  target?: Hex;
  /** first address mapped (gva for guest trees, gpa for TDP trees) */
  va?: Hex;
  pageSize?: PageSize;
  /** 0..15 */
  pkey?: number;
  note?: string;
  child?: Table;
}

/** One page table (schema `definitions.table`). */
export interface Table {
  /** 1..5 */
  level: number;
  name: LevelName;
  /** guest-physical (guest tree) or host-physical (TDP/shadow tree) address of the table */
  addr?: Hex;
  /** shadow page gfn (sp->gfn) for TDP/shadow trees */
  gfn?: Hex;
  role?: Role;
  spId?: number;
  size: 4 | 512 | 1024;
  /** number of present entries, 0..1024 */
  present?: number;
  /** present entries left out because the snapshot was bounded */
  omitted?: number;
  /** at most 1024 */
  entries: Entry[];
}

/** Tree kinds of the schema (`tree.kind`). */
export const TREE_KINDS = ["guest", "tdp", "shadow"] as const;
/** Kind of tree. */
export type TreeKind = (typeof TREE_KINDS)[number];
/** Tree formats of the schema (`tree.format`). */
export const TREE_FORMATS = [
  "32-bit",
  "pae",
  "4-level",
  "5-level",
  "tdp-4",
  "tdp-5",
  "shadow",
] as const;
/** Paging format of a tree. */
export type TreeFormat = (typeof TREE_FORMATS)[number];

/** One page-table tree (schema `definitions.tree`). */
export interface Tree {
  kind: TreeKind;
  format: TreeFormat;
  label?: string;
  root: Table;
}

/** Payload of {@link PAGETABLE_MIME} (schema `definitions.pagetable`). */
export interface PagetablePayload {
  version: 1;
  kind: "pagetable";
  title?: string;
  /** 1..4 trees shown side by side (e.g. guest and TDP) */
  trees: Tree[];
  /** optional earlier snapshot of the same trees, same order: the renderer shows what changed */
  before?: Tree[];
  truncated?: boolean;
  /** what differs between `before` and `trees`, folded (written by `changes()`) */
  changes?: PagetableChanges;
}

/** Kinds of change of schema `changeRun.kind`. */
export const CHANGE_KINDS = ["added", "removed", "changed"] as const;
/** How an entry differs from its `before` snapshot. */
export type ChangeKind = (typeof CHANGE_KINDS)[number];

/** One side, before or after, of a change run's first member (schema `definitions.changeSide`). */
export interface ChangeSide {
  value: Hex;
  flags: Flag[];
  /** gfn (guest tree) or pfn (TDP/shadow tree) of the first member */
  target?: Hex;
  /**
   * Value of the last member (count > 1). Members progress uniformly: member k's value is
   * `value + k * (last - value) / (count - 1)` and its target moves by as many 4 KiB frames.
   */
  last?: Hex;
}

/**
 * `count` entries at one level, changed the same way, whose addresses follow each other (each
 * member maps the next span of the level) and whose values progress uniformly (schema
 * `definitions.changeRun`).
 */
export interface ChangeRun {
  /** index into `trees` */
  tree: number;
  level: number;
  name: LevelName;
  kind: ChangeKind;
  count: number;
  /** first address the first member maps: gva (guest, shadow trees) or gpa (TDP trees) */
  addr: Hex;
  /** first address the last member maps (count > 1) */
  lastAddr?: Hex;
  /** the first member before (changed, removed) */
  before?: ChangeSide;
  /** the first member after (added, changed) */
  after?: ChangeSide;
}

/** Changes at one level of one tree (schema `changes.levels[]`). */
export interface LevelChanges {
  tree: number;
  level: number;
  name: LevelName;
  added: number;
  removed: number;
  changed: number;
}

/** What differs between two snapshots of the same trees, folded (schema `definitions.changes`). */
export interface PagetableChanges {
  /** counts per tree and level, trees in order, top level first; levels without changes left out */
  levels: LevelChanges[];
  /** the folded runs, trees in order, top level first, by address; at most 1000 */
  runs: ChangeRun[];
  /** runs left out beyond the 1000 */
  omitted?: number;
}

/** One level of a guest walk (schema `definitions.walkLevel`). */
export interface WalkLevel {
  level: number;
  name: LevelName;
  tableGfn?: Hex;
  index: number;
  pteGpa: Hex;
  /** gpte before the walk */
  before: Hex;
  /** gpte after the walk (A/D set) */
  after: Hex;
  flags?: Flag[];
  leaf: boolean;
  aSet?: boolean;
  dSet?: boolean;
  note?: string;
}

/** How the address splits into one per-level index, top first. */
export interface IndexBits {
  name: LevelName | "offset";
  /** bit numbers, 0..63 */
  hi: number;
  lo: number;
  value: number;
}

/** Access being walked for. */
export interface WalkAccess {
  write: boolean;
  user: boolean;
  fetch: boolean;
}

/** Successful walk: the translated gpa. */
export interface WalkOk {
  fault: false;
  gpa: Hex;
  pageSize?: PageSize;
  mmio?: boolean;
}

/** Fault error-code bit names of the schema (`result.errorBits`). */
export const ERROR_BITS = ["P", "W", "U", "RSVD", "I", "PK", "SS", "SGX"] as const;
/** Fault error-code bit names. */
export type ErrorBit = (typeof ERROR_BITS)[number];

/** Faulting walk: the exception the guest receives. */
export interface WalkFault {
  fault: true;
  /** 13 (#GP) or 14 (#PF) */
  vector: 13 | 14;
  errorCode: number;
  errorBits?: ErrorBit[];
  reason: string;
}

/** Walk modes of the schema (`walk.mode`). */
export const WALK_MODES = ["32-bit", "pae", "4-level", "5-level", "none"] as const;
/** Paging mode of a walk. */
export type WalkMode = (typeof WALK_MODES)[number];

/** Payload of {@link WALK_MIME} (schema `definitions.walk`). */
export interface WalkPayload {
  version: 1;
  kind: "walk";
  mode: WalkMode;
  gva: Hex;
  access: WalkAccess;
  indexBits?: IndexBits[];
  /** at most 5 */
  levels: WalkLevel[];
  result: WalkOk | WalkFault;
}

/** EPT table names of the schema (`eptStep.name`): the EPT PML5 table down to the EPT page table. */
export const EPT_TABLE_NAMES = ["PML5", "PML4", "PDPT", "PD", "PT"] as const;
/** Name of an EPT paging-structure level. */
export type EptTableName = (typeof EPT_TABLE_NAMES)[number];

/**
 * One EPT paging-structure entry the CPU read while translating a column's guest-physical
 * address, root first (schema `definitions.eptStep`).
 */
export interface EptStep {
  /** EPT level, 1..5 */
  level: number;
  name: EptTableName;
  /** 0..511 */
  index: number;
  /** Shadow page (KVM's `struct kvm_mmu_page`) holding the entry. */
  sp?: number;
  /** The entry before the access (0x0: not present). */
  before: Hex;
  /** The entry after the access. */
  after: Hex;
  /** Flags of `after`. */
  flags?: Flag[];
  leaf: boolean;
  /** Size the leaf maps. */
  pageSize?: 4096 | 2097152 | 1073741824;
  /** Number of this memory reference in the order the CPU made them, 1..35. */
  ref?: number;
  /** Not present before, present after: a KVM fault installed it (with A/D as `make_spte` sets them). */
  installed?: boolean;
  /** The CPU set A / D in this (already present) entry during the access. */
  aSet?: boolean;
  dSet?: boolean;
  note?: string;
}

/** Column kinds of the schema (`walk2dColumn.kind`). */
export const WALK2D_COLUMN_KINDS = ["gpte", "pdptr", "data"] as const;
/** A guest paging-structure entry read, a PAE PDPTE register, or the data access. */
export type Walk2dColumnKind = (typeof WALK2D_COLUMN_KINDS)[number];

/** How the EPT walk treated an access (schema `walk2dColumn.eptAccess`). */
export const EPT_ACCESSES = ["read", "write", "fetch"] as const;
/** Access kind of an EPT walk. */
export type EptAccess = (typeof EPT_ACCESSES)[number];

/** The EPT violations one column's access took (schema `walk2dColumn.violation`). */
export interface Walk2dViolation {
  /** Exits taken (the CPU retries after each). */
  count: number;
  /** Where the first walk stopped. */
  level?: number;
  name?: EptTableName;
  reason: string;
  /** Error code `handle_ept_violation` derived for the last exit (PFERR bits). */
  errorCode: number;
}

/** One guest-physical access of a 2-D walk (schema `definitions.walk2dColumn`). */
export interface Walk2dColumn {
  kind: Walk2dColumnKind;
  /** Guest table of the entry read (`PDPTR`: the PAE register), or `data`. */
  name: LevelName | "data";
  /** Guest-physical address translated: the entry's, or the data's. */
  gpa: Hex;
  eptAccess?: EptAccess;
  /** The EPT walk, root first; empty for a PDPTE register. At most 5. */
  ept: EptStep[];
  /** `mmio`: the access left the guest (no memslot, or a write to a read-only one). */
  eptResult?: "mapped" | "mmio";
  /** Host-physical address reached. */
  hpa?: Hex;
  violation?: Walk2dViolation;
  /** EPT violations of the A/D write-back into this guest table (EPT without A/D bits). */
  writeBackViolations?: number;
  /** The guest entry read (gpte and pdptr columns). */
  guest?: WalkLevel;
  /** Reference number of the guest entry read. */
  guestRef?: number;
  note?: string;
}

/** Payload of {@link WALK2D_MIME} (schema `definitions.walk2d`). */
export interface Walk2dPayload {
  version: 1;
  kind: "walk2d";
  /** Guest paging mode. */
  mode: WalkMode;
  /** EPT levels (4 or 5). */
  eptLevels: 4 | 5;
  /** EPTP bit 6: the CPU sets EPT A/D bits, and guest table accesses count as writes. */
  eptAccessDirty: boolean;
  gva: Hex;
  access: WalkAccess;
  /** Guest table reads top first, then the data access; at most 6. */
  columns: Walk2dColumn[];
  /** Memory references of the walk, 0..35. */
  references: number;
  /** EPT violations (VM exits) the access took. */
  violations: number;
  result: WalkOk | WalkFault;
}

/** Any payload of the schema. */
export type DisplayPayload = PagetablePayload | WalkPayload | Walk2dPayload;

/** A Jupyter MIME bundle: MIME type → data. */
export type MimeBundle = Record<string, unknown>;

/**
 * The symbol under which an object offers its MIME bundle to the kernel
 * (`value[JUPYTER_DISPLAY]()` → {@link MimeBundle}); the same symbol tslab uses.
 */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display");

/** Minimal plotly figure shape: traces plus an optional layout. */
export interface PlotlyFigure {
  data: PlotlyTrace[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

/** One plotly trace; only the fields the static fallback reads are typed. */
export interface PlotlyTrace {
  type?: string;
  name?: string;
  x?: ReadonlyArray<number | string>;
  /** `null` is a gap in the line (plotly's convention). */
  y?: ReadonlyArray<number | string | null>;
  mode?: string;
  [key: string]: unknown;
}
