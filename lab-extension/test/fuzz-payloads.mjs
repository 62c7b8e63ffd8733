// Seeded payload generator of the renderer fuzz (renderer-fuzz.test.mjs): valid payloads taken
// from the display bundles of real simulator objects (@mmulab/core's dist), then mutated —
// fields dropped, duplicated and retyped, numbers made NaN/±Infinity/-1/2^60/strings, values
// nested 10^4 deep, arrays of 10^5 items, strings of 10 MB, `__proto__`/`constructor`/`prototype`
// keys, markup and `javascript:` strings, and URLs to an off-host address.
//
// A case is JSON text (what JupyterLab parses a saved or received output from) plus its MIME
// type. NaN and ±Infinity cannot be JSON: they travel as sentinel strings that the page's reviver
// turns back into numbers (see NON_JSON), so the renderer gets what a buggy kernel could hand it.
import { createRequire } from "node:module";
import path from "node:path";
import { xorshift32 } from "../../core/scripts/access-space-lib.mjs";
import { HOSTILE_STRINGS } from "./payloads.mjs";

const core = createRequire(import.meta.url)(
  path.join(path.dirname(new URL(import.meta.url).pathname), "../../core/dist/cjs/index.js"),
);

export const PAGETABLE_MIME = "application/vnd.mmulab.pagetable+json";
export const WALK_MIME = "application/vnd.mmulab.walk+json";
export const WALK2D_MIME = "application/vnd.mmulab.walk2d+json";
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";
/** Every MIME type the extension's renderer factory registers. */
export const MIMES = [PAGETABLE_MIME, WALK_MIME, WALK2D_MIME, PLOTLY_MIME];

/** Sentinel strings the page revives into non-JSON numbers. */
export const NON_JSON = {
  NaN: "\u0000NaN",
  Infinity: "\u0000Infinity",
  "-Infinity": "\u0000-Infinity",
};

/** The string the injection payloads set when they run (checked on the page). */
export const PWNED = "__pwned";
/** The off-host address of the URL payloads (TEST-NET-1, never routable). */
export const OFF_HOST = "192.0.2.1";

/** Markup, script and URL strings; each would set window.__pwned or fetch off-host if it ran. */
export const INJECTIONS = [
  ...HOSTILE_STRINGS,
  "<img src=x onerror=window.__pwned=1>",
  "<script>window.__pwned=1</script>",
  '"><svg onload=window.__pwned=1>',
  "<iframe srcdoc='<script>parent.__pwned=1</script>'></iframe>",
  "javascript:window.__pwned=1",
  "JaVaScRiPt:window.__pwned=1//",
  `<a href="javascript:window.__pwned=1">click</a>`,
  `<img src="http://${OFF_HOST}/x.png">`,
  `http://${OFF_HOST}/x.png`,
  `//${OFF_HOST}/x.png`,
  `url(http://${OFF_HOST}/x.png)`,
  `<link rel=stylesheet href="http://${OFF_HOST}/x.css">`,
  `<style>@import "http://${OFF_HOST}/x.css"</style>`,
  // A template-literal lookalike (a renderer that evaluated it would run it).
  "$" + "{window.__pwned=1}",
  "{{constructor.constructor('window.__pwned=1')()}}",
  "\u202e\u0000\ud800 <b>bidi</b>",
];

/** Keys that pollute prototypes when a careless merge copies them. */
const PROTO_KEYS = ["__proto__", "constructor", "prototype"];

/** JSON text emitted verbatim by {@link serialize} (deep nesting built without recursion). */
class Raw {
  constructor(text) {
    this.text = text;
  }
}

/** An object whose key `key` appears twice in the JSON text: first `first`, then the object's value. */
class DupKey {
  constructor(obj, key, first) {
    this.obj = obj;
    this.key = key;
    this.first = first;
  }
}

/** JSON text of `v`, honouring Raw and DupKey and writing own `__proto__` keys as data. */
export function serialize(v) {
  if (v instanceof Raw) return v.text;
  if (v instanceof DupKey) {
    const inner = serialize(v.obj);
    const dup = `${JSON.stringify(v.key)}:${serialize(v.first)}`;
    return inner === "{}" ? `{${dup}}` : `{${dup},${inner.slice(1)}`;
  }
  if (typeof v === "number" && !Number.isFinite(v)) return JSON.stringify(NON_JSON[String(v)]);
  if (Array.isArray(v)) return `[${v.map(serialize).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const parts = [];
    for (const k of Object.keys(v)) parts.push(`${JSON.stringify(k)}:${serialize(v[k])}`);
    return `{${parts.join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

/** Deep copy that keeps own `__proto__` keys as data (structuredClone does too, but not Raw). */
function clone(v) {
  if (Array.isArray(v)) return v.map(clone);
  if (v instanceof Raw || v instanceof DupKey) return v;
  if (v !== null && typeof v === "object") {
    const out = {};
    for (const k of Object.keys(v))
      Object.defineProperty(out, k, {
        value: clone(v[k]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    return out;
  }
  return v;
}

/** Sets an own data property even when the key is `__proto__`. */
function put(obj, key, value) {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

// ---------------------------------------------------------------------------------------------
// Valid payloads from the simulator
// ---------------------------------------------------------------------------------------------

const MiB = 2 ** 20;
const GVA = 0x40000000;

/** Every mmulab or plotly payload in `obj`'s Jupyter display bundle, as [mime, payload]. */
function payloadsOf(obj) {
  const bundle = obj[Symbol.for("Jupyter.display")]();
  return MIMES.filter((m) => bundle[m] !== undefined).map((m) => [m, bundle[m]]);
}

/**
 * Payloads of a few VMs: TDP and shadow MMUs, 4-level, 5-level, PAE and 32-bit guests, 4 KiB and
 * 2 MiB backing; their guest and TDP/shadow snapshots, side-by-side and changes() views, guest
 * walks (a hit and a #PF), 2-D walks cold and warm, and a fault heatmap (plotly).
 */
export function seedPayloads() {
  const out = [];
  const add = (obj) => out.push(...payloadsOf(obj));
  const configs = [
    { mmu: "tdp", mode: "4-level", backing: "4k" },
    { mmu: "tdp", mode: "5-level", backing: "hugetlb-2m" },
    { mmu: "tdp", mode: "pae", backing: "4k" },
    { mmu: "shadow", mode: "32-bit", backing: "4k" },
    { mmu: "shadow", mode: "4-level", backing: "4k" },
  ];
  for (const { mmu, mode, backing } of configs) {
    const vm = core.createVm({ mmu });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 ** 30, flags: 0, backing });
    const tables = new core.GuestPageTableBuilder(vm, { mode, poolBase: MiB, poolSize: MiB });
    tables.map(GVA, 16 * MiB, 2 * MiB, { user: true, writable: true });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...tables.sregs({ nx: mode !== "32-bit" }), cpl: 3 });
    if (mmu === "tdp") vm.startTrace(4096, ["kvm_page_fault"]);
    vcpu.access(GVA + 0x3123, { write: true, user: true });
    const before = [tables.snapshot(), vm.snapshot()];
    add(tables.snapshot());
    add(vm.snapshot());
    add(core.sideBySide(...before));
    for (let gva = GVA; gva < GVA + 64 * 4096; gva += 4096) vcpu.access(gva, { user: true });
    add(core.changes(before, [tables.snapshot(), vm.snapshot()], `${mmu} ${mode}`));
    add(vcpu.walk(GVA + 0x5000, { write: true, user: true }));
    add(vcpu.walk(GVA + 4 * MiB, { user: true }));
    if (mmu === "tdp") {
      add(vcpu.walk2d(GVA + 0x40123, { write: true, user: true }));
      add(vcpu.walk2d(GVA + 0x40123, { write: true, user: true }));
      add(vm.stopTrace().faultHeatmap({ rows: 1 }));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------------

/** Seeded choice helpers over xorshift32. */
function rng(seed) {
  const next = xorshift32(seed);
  const r = {
    /** Integer in [0, n). */
    int: (n) => next() % n,
    pick: (a) => a[r.int(a.length)],
    chance: (p) => next() / 2 ** 32 < p,
  };
  return r;
}

/** Every [container, key] of a payload (objects and arrays, depth first), Raw leaves excluded. */
function slots(root) {
  const all = [];
  const stack = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== "object" || node instanceof Raw || node instanceof DupKey)
      continue;
    for (const k of Object.keys(node)) {
      all.push([node, Array.isArray(node) ? Number(k) : k]);
      stack.push(node[k]);
    }
  }
  return all;
}

const TEN_MB = 10 * 2 ** 20;

/** 10^4 nested arrays or objects around `inner` (JSON text). */
function deepText(r, depth = 10_000, inner = "1") {
  return r.chance(0.5)
    ? new Raw(`${"[".repeat(depth)}${inner}${"]".repeat(depth)}`)
    : new Raw(`${'{"a":'.repeat(depth)}${inner}${"}".repeat(depth)}`);
}

/**
 * A schema-shaped table chain `depth` deep (each table's only entry has the next as its child),
 * so nesting reaches the renderer's and validator's recursion rather than a type error.
 */
function deepTableChain(depth) {
  const open =
    '{"level":1,"name":"PT","size":512,"entries":[{"index":0,"value":"0x1","flags":["present"],"leaf":false,"child":';
  const leaf = '{"level":1,"name":"PT","size":512,"entries":[]}';
  return new Raw(`${open.repeat(depth)}${leaf}${"}]}".repeat(depth)}`);
}

/** Replacement values by kind. */
function weirdNumber(r) {
  return r.pick([
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    -1,
    2 ** 60,
    -0,
    0.5,
    1e308,
    -(2 ** 53),
    2 ** 31,
    1023,
    1024,
    4096,
    "7",
    "0x10",
    "",
  ]);
}

function retyped(r, v) {
  const options = [null, true, false, 0, "", "text", [], {}, [v], { value: v }];
  if (typeof v === "string") options.push(Number.parseInt(v, 16) || 1, v.toUpperCase(), `${v}0`);
  if (typeof v === "number") options.push(String(v), `0x${Math.abs(v).toString(16)}`);
  return r.pick(options);
}

function weirdString(r) {
  // 10 MB strings are rarer than the rest: each costs a 10 MB transfer into the page.
  if (r.int(24) === 0) return "x".repeat(TEN_MB);
  const which = 1 + r.int(9);
  if (which === 1) return `0x${"f".repeat(17)}`;
  if (which === 2) return "0XFF";
  if (which === 3) return "";
  return r.pick(INJECTIONS);
}

/** An object of prototype-polluting keys, each carrying markers the page checks for. */
function pollutant(r) {
  const o = {};
  const key = r.pick(PROTO_KEYS);
  const marker = { polluted: "yes", toString: "<img src=x onerror=window.__pwned=1>", [PWNED]: 1 };
  if (key === "constructor") put(o, key, { prototype: marker });
  else put(o, key, marker);
  return o;
}

/** Mutations: each changes `root` in place (or returns a replacement root). */
const MUTATIONS = {
  drop(r, root) {
    const s = slots(root).filter(([c]) => !Array.isArray(c));
    if (s.length === 0) return root;
    const [c, k] = r.pick(s);
    delete c[k];
    return root;
  },
  duplicateItem(r, root) {
    const s = slots(root).filter(([c]) => Array.isArray(c));
    if (s.length === 0) return root;
    const [c, k] = r.pick(s);
    c.splice(k, 0, clone(c[k]));
    return root;
  },
  duplicateKey(r, _root, wrap) {
    // The key appears twice in the text; JSON.parse keeps the later value.
    const s = slots(_root).filter(([c, k]) => !Array.isArray(c) && typeof k === "string");
    if (s.length === 0) return _root;
    const [c, k] = r.pick(s);
    const rest = {};
    for (const key of Object.keys(c)) put(rest, key, c[key]);
    const dup = new DupKey(rest, k, retyped(r, c[k]));
    return wrap(c, dup);
  },
  retype(r, root) {
    const s = slots(root);
    if (s.length === 0) return root;
    const [c, k] = r.pick(s);
    c[k] = retyped(r, c[k]);
    return root;
  },
  number(r, root) {
    const s = slots(root).filter(([c, k]) => typeof c[k] === "number");
    if (s.length === 0) return root;
    const [c, k] = r.pick(s);
    c[k] = weirdNumber(r);
    return root;
  },
  string(r, root) {
    const s = slots(root).filter(([c, k]) => typeof c[k] === "string");
    if (s.length === 0) return root;
    const [c, k] = r.pick(s);
    c[k] = weirdString(r);
    return root;
  },
  label(r, root) {
    // Free-text fields the renderer prints: markup must stay text.
    const s = slots(root).filter(([, k]) =>
      ["note", "label", "title", "reason", "text", "name", "hovertemplate"].includes(k),
    );
    if (s.length === 0) return MUTATIONS.string(r, root);
    const [c, k] = r.pick(s);
    c[k] = r.pick(INJECTIONS);
    return root;
  },
  deep(r, root) {
    const s = slots(root);
    if (s.length === 0) return root;
    const [c, k] = r.pick(s);
    c[k] = k === "child" || r.chance(0.3) ? deepTableChain(10_000) : deepText(r);
    return root;
  },
  bigArray(r, root) {
    // 10^5 copies of the array's first item (a small stand-in when that is a whole subtree: 10^5
    // copies of one would be gigabytes), written as text so later mutations need not walk them.
    const arrays = slots(root).filter(([c, k]) => Array.isArray(c[k]));
    const [c, k] = arrays.length > 0 ? r.pick(arrays) : (r.pick(slots(root)) ?? [root, "x"]);
    const first = Array.isArray(c[k]) && c[k].length > 0 ? serialize(c[k][0]) : "0";
    const item = first.length <= 40 ? first : r.pick(["{}", "0", '"0x1"']);
    c[k] = new Raw(`[${`${item},`.repeat(99_999)}${item}]`);
    return root;
  },
  protoKey(r, root) {
    const objs = [root, ...slots(root).map(([c, k]) => c[k])].filter(
      (v) =>
        v !== null &&
        typeof v === "object" &&
        !Array.isArray(v) &&
        !(v instanceof Raw) &&
        !(v instanceof DupKey),
    );
    const target = r.pick(objs);
    const p = pollutant(r);
    for (const k of Object.keys(p)) put(target, k, p[k]);
    return root;
  },
  offHostUrl(r, root) {
    // URL-shaped values where a renderer (plotly) might load them: image sources, links.
    const url = r.pick([
      `http://${OFF_HOST}/x.png`,
      `https://${OFF_HOST}/x.png`,
      `//${OFF_HOST}/x.png`,
      "javascript:window.__pwned=1",
    ]);
    if (root.data !== undefined && root.layout !== undefined) {
      if (root.layout === null || typeof root.layout !== "object") root.layout = {};
      const layout = root.layout;
      const which = r.int(4);
      if (which === 0)
        layout.images = [
          { source: url, xref: "paper", yref: "paper", x: 0, y: 1, sizex: 1, sizey: 1 },
        ];
      else if (which === 1) layout.title = { text: `<a href="${url}">link</a>` };
      else if (which === 2) layout.annotations = [{ text: `<a href="${url}">a</a>`, x: 0, y: 0 }];
      else layout.xaxis = { title: { text: `<img src="${url}">` } };
      return root;
    }
    const s = slots(root).filter(([c, k]) => typeof c[k] === "string");
    if (s.length === 0) return root;
    const [c, k] = r.pick(s);
    c[k] = url;
    return root;
  },
  /**
   * Values the schema allows, chosen without regard to the rest of the payload: indices past a
   * 4-entry table, runs past the table's end, levels that disagree with names, 64-bit entries
   * with every bit set, references out of order, huge counts: what validation lets through to
   * the renderers.
   */
  inRange(r, root) {
    const range = {
      index: () => r.pick([0, 3, 4, 511, 512, 1023]),
      count: () => r.pick([1, 2, 512, 1023, 1024]),
      level: () => 1 + r.int(5),
      size: () => r.pick([4, 512, 1024]),
      ref: () => 1 + r.int(35),
      guestRef: () => 1 + r.int(35),
      references: () => r.int(36),
      pageSize: () => r.pick([4096, 2097152, 4194304, 1073741824]),
      errorCode: () => r.pick([0, 0xffffffff, 2 ** 53 - 1, 2 ** 31]),
      hi: () => r.int(64),
      lo: () => r.int(64),
      tree: () => r.int(4),
      spId: () => r.pick([0, 2 ** 53 - 1]),
      violations: () => r.pick([0, 2 ** 53 - 1]),
      present: () => r.pick([0, 1024]),
      omitted: () => r.pick([0, 2 ** 53 - 1]),
      quadrant: () => r.int(4),
      smm: () => r.int(256),
      eptLevels: () => r.pick([4, 5]),
    };
    const hexKeys = [
      "value",
      "target",
      "va",
      "addr",
      "gfn",
      "gpa",
      "hpa",
      "gva",
      "before",
      "after",
      "last",
      "pteGpa",
      "tableGfn",
      "lastAddr",
      "word",
    ];
    const s = slots(root).filter(
      ([c, k]) => Object.hasOwn(range, k) || (hexKeys.includes(k) && typeof c[k] === "string"),
    );
    if (s.length === 0) return root;
    for (let n = 1 + r.int(4); n > 0; n--) {
      const [c, k] = r.pick(s);
      c[k] = range[k]
        ? range[k]()
        : r.pick(["0x0", "0xffffffffffffffff", "0x8000000000000000", "0xfffffffffffff000", "0x1"]);
    }
    return root;
  },
  /** Schema-valid but inconsistent values: indices past the table, runs past its end, etc. */
  inconsistent(r, root) {
    const s = slots(root).filter(([c, k]) => typeof c[k] === "number" || typeof c[k] === "boolean");
    if (s.length === 0) return root;
    const [c, k] = r.pick(s);
    c[k] =
      typeof c[k] === "boolean"
        ? !c[k]
        : r.pick([0, 1, 3, 4, 5, 35, 511, 512, 1023, 1024, 2 ** 31, 2 ** 53 - 1]);
    return root;
  },
};

/** Plotly-specific shapes the plot renderer hands to plotly.js. */
const PLOTLY_SPECIALS = [
  () => ({
    data: [{ type: "scattergeo", lon: [0], lat: [0] }],
    layout: { geo: { scope: "world" } },
  }),
  () => ({ data: [{ type: "choropleth", locations: ["FRA"], z: [1] }] }),
  () => ({
    data: [{ type: "scattermapbox", lon: [0], lat: [0] }],
    layout: { mapbox: { style: "open-street-map" } },
  }),
  () => ({ data: [{ type: "scattermap", lon: [0], lat: [0] }] }),
  () => ({ data: [{ type: "densitymap", lon: [0], lat: [0] }] }),
  () => ({
    data: [{ type: "scatter", x: [1], y: [1] }],
    layout: {
      images: [
        {
          source: `http://${OFF_HOST}/x.png`,
          x: 0,
          y: 1,
          sizex: 1,
          sizey: 1,
          xref: "paper",
          yref: "paper",
        },
      ],
    },
  }),
  (r) => ({
    data: [{ type: "scatter", x: [1], y: [1], text: [r.pick(INJECTIONS)], mode: "markers+text" }],
    layout: { title: { text: r.pick(INJECTIONS) } },
  }),
  () => ({
    data: [
      {
        type: "scatter",
        x: [1],
        y: [1],
        hovertemplate: "<a href='javascript:window.__pwned=1'>x</a>",
      },
    ],
  }),
  () => ({
    data: [
      {
        type: "bar",
        x: new Array(100_000).fill(0).map((_, i) => i),
        y: new Array(100_000).fill(1),
      },
    ],
  }),
  () => ({
    data: new Raw(`[${'{"type":"scatter","x":[1],"y":[1]},'.repeat(99_999)}{"type":"scatter"}]`),
  }),
  () => ({
    data: [{ type: "scatter", x: [1], y: [1] }],
    layout: { title: { text: "t".repeat(TEN_MB) } },
  }),
  () => ({
    data: [{ type: "scatter", x: [1], y: [1] }],
    layout: { template: { layout: { images: [{ source: `http://${OFF_HOST}/t.png` }] } } },
  }),
  () => ({
    data: [{ type: "scatter", x: [1], y: [1] }],
    config: { topojsonURL: `http://${OFF_HOST}/`, mapboxAccessToken: "x", staticPlot: "yes" },
  }),
  () => ({ data: [{ type: "no-such-trace" }] }),
  () => ({ data: [{ type: "image", source: `http://${OFF_HOST}/x.png` }] }),
  () => ({ data: [{ type: "image", source: "data:image/png;base64,iVBORw0KGgo=" }] }),
  () => ({
    data: [{ type: "scatter", x: [1], y: [1], marker: { color: "url(http://192.0.2.1/x.png)" } }],
  }),
];

/**
 * `count` fuzz cases from `seed`: each `{ i, mime, origin, text }` where `origin` says how it was
 * made ("valid <seed>", "mutated <seed> by <ops>", "plotly special <n>", "garbage"). About one in
 * ten is an unmutated simulator payload; the rest carry 1-3 mutations. MIME types rotate so each
 * gets a quarter, and a mutated payload is sometimes sent under another mmulab MIME type.
 */
export function generateCases(seed, count) {
  const r = rng(seed);
  const seeds = seedPayloads();
  const byMime = new Map(MIMES.map((m) => [m, seeds.filter(([sm]) => sm === m).map(([, p]) => p)]));
  for (const m of MIMES)
    if (byMime.get(m).length === 0) throw new Error(`no simulator payload of ${m}`);
  // The heavy mutations (10^4-deep nesting, 10^5-item arrays: megabytes each) are drawn 4% of the
  // time, about 65 cases in 1,000, so the run stays within minutes.
  const heavy = ["deep", "bigArray"];
  const light = Object.keys(MUTATIONS).filter((n) => !heavy.includes(n));
  const cases = [];
  for (let i = 0; i < count; i++) {
    const mime = MIMES[i % MIMES.length];
    const pool = byMime.get(mime);
    const seedIndex = r.int(pool.length);
    let root = clone(pool[seedIndex]);
    let origin;
    const roll = r.int(100);
    if (roll < 10) {
      origin = `valid ${mime.split(".").pop()} #${seedIndex}`;
    } else if (roll < 13) {
      root = r.pick([null, 0, "text", [], true, new Raw(`"${"y".repeat(64)}"`), deepText(r)]);
      origin = "garbage";
    } else if (mime === PLOTLY_MIME && roll < 30) {
      const n = r.int(PLOTLY_SPECIALS.length);
      root = PLOTLY_SPECIALS[n](r);
      origin = `plotly special ${n}`;
    } else {
      const ops = [];
      const k = 1 + r.int(3);
      for (let j = 0; j < k; j++) {
        const name = r.chance(0.04) ? r.pick(heavy) : r.pick(light);
        ops.push(name);
        let replaced;
        const wrap = (target, dup) => {
          if (target === root) replaced = dup;
          else for (const [c, key] of slots(root)) if (c[key] === target) c[key] = dup;
          return replaced ?? root;
        };
        root = MUTATIONS[name](r, root, wrap);
        // A root replaced by a DupKey or Raw takes no further mutations.
        if (root instanceof DupKey || root instanceof Raw) break;
      }
      origin = `mutated #${seedIndex} by ${ops.join(", ")}`;
    }
    let sentAs = mime;
    if (mime !== PLOTLY_MIME && r.int(20) === 0) sentAs = r.pick(MIMES.filter((m) => m !== mime));
    cases.push({ i, mime: sentAs, origin, text: serialize(root) });
  }
  return cases;
}
