// Renderer details in a standalone page (the extension's lib/ and style bundled by esbuild):
// diffs with removed and changed entries, 32-bit tables of 1024 entries, search misses, EPT
// decoding, walk results, and a renderer failure drawn inside the widget.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";
import { test } from "node:test";
import { rendererPageFixture, renderWidget, repo, TIMEOUT } from "./helpers.mjs";
import { EPT, entryValue, PTE, smallSnapshot, walkPayload } from "./payloads.mjs";

const PT_MIME = "application/vnd.mmulab.pagetable+json";
const WALK_MIME = "application/vnd.mmulab.walk+json";
const fx = rendererPageFixture();

/** Renders `payload` in a fresh widget and returns a locator of that widget. */
const render = (payload, mime = PT_MIME) => renderWidget(fx.page, payload, mime);

const guestPt = (tree) => tree.root.entries[0].child.entries[0].child.entries[0].child;

test("diff: added, changed and removed entries are marked and counted", {
  timeout: TIMEOUT.page,
}, async () => {
  const now = smallSnapshot({ after: true });
  const before = smallSnapshot({ after: false });
  // Changed: PT[20] becomes dirty. Removed: PT[30] existed before only.
  const e20 = guestPt(now.guest).entries.find((e) => e.index === 20);
  e20.value = entryValue(0x214, [PTE.P, PTE.US, PTE.A, PTE.D]);
  e20.flags = [...e20.flags, "dirty"];
  guestPt(before.guest).entries.push({
    index: 30,
    value: entryValue(0x300, [PTE.P]),
    flags: ["present"],
    leaf: true,
  });
  const w = await render({
    version: 1,
    kind: "pagetable",
    trees: [now.guest],
    before: [before.guest],
  });
  const pt = w.locator(".mmulab-pt-table[data-path='0.0.0.2'] > .mmulab-pt-body");
  const marks = await pt
    .locator(":scope > .mmulab-pt-entry")
    .evaluateAll((els) =>
      els
        .filter((e) => /mmulab-diff-/.test(e.className))
        .map((e) => `${e.dataset.index}:${e.className.match(/mmulab-diff-(\w+)/)[1]}`),
    );
  assert.deepEqual(marks.sort(), ["11:added", "20:changed", "30:removed"]);
  // Three entries differ in the whole tree (the upper tables are unchanged).
  assert.match(await w.locator(".mmulab-pt-tree-title").textContent(), /Δ 3 changed/);
  await pt.locator(".mmulab-pt-entry[data-index='20']").click();
  const detail = await w.locator(".mmulab-detail").textContent();
  assert.match(detail, /changed/);
  assert.match(detail, new RegExp(`before${entryValue(0x214, [PTE.P, PTE.US, PTE.A])}`));
});

test("32-bit paging: 1024-entry tables, 4 MiB per PD entry, search lands on the PT entry", {
  timeout: TIMEOUT.page,
}, async () => {
  const va = 0x00c05123;
  const pdIndex = Math.floor(va / 2 ** 22); // bits 31:22
  const ptIndex = Math.floor(va / 4096) % 1024; // bits 21:12
  const tree = {
    kind: "guest",
    format: "32-bit",
    root: {
      level: 2,
      name: "PD",
      size: 1024,
      entries: [
        {
          index: pdIndex,
          value: entryValue(0x50, [PTE.P, PTE.RW]),
          flags: ["present", "writable"],
          leaf: false,
          child: {
            level: 1,
            name: "PT",
            size: 1024,
            entries: [
              {
                index: ptIndex,
                value: entryValue(0x777, [PTE.P]),
                flags: ["present"],
                leaf: true,
                target: "0x777",
              },
            ],
          },
        },
      ],
    },
  };
  const w = await render({ version: 1, kind: "pagetable", trees: [tree] });
  // The absent rows of the PT account for 1023 of its 1024 slots.
  const absent = await w
    .locator(".mmulab-pt-table[data-level='1'] > .mmulab-pt-body > .mmulab-pt-absent")
    .evaluateAll((els) => els.reduce((s, e) => s + Number(e.dataset.count), 0));
  assert.equal(absent, 1023);
  await w.locator(".mmulab-search-input").fill(`0x${va.toString(16)}`);
  await w.locator(".mmulab-search-go").click();
  assert.match(
    await w.locator(".mmulab-detail-title").textContent(),
    new RegExp(`PT\\[${ptIndex}\\]`),
  );
  const start = va - (va % 4096);
  assert.match(
    await w.locator(".mmulab-detail").textContent(),
    new RegExp(`0x${start.toString(16)} – 0x${(start + 4095).toString(16)}`),
  );
  // A miss names the level where the walk stopped.
  await w.locator(".mmulab-search-input").fill("0x40000000");
  await w.locator(".mmulab-search-go").click();
  assert.match(
    await w.locator(".mmulab-search-result").textContent(),
    new RegExp(`PD\\[${0x40000000 / 2 ** 22}\\] absent: not mapped`),
  );
  await w.locator(".mmulab-search-input").fill("<img src=x onerror=alert(1)>");
  await w.locator(".mmulab-search-go").click();
  assert.match(await w.locator(".mmulab-search-result").textContent(), /not an address/);
});

test("EPT entries decode to EPT field names", { timeout: TIMEOUT.page }, async () => {
  const { tdp } = smallSnapshot();
  const w = await render({ version: 1, kind: "pagetable", trees: [tdp] });
  const leaf = tdp.root.entries[0].child.entries[0].child.entries[0].child.entries[0];
  await w
    .locator(`.mmulab-pt-table[data-path='0.0.0.1'] .mmulab-pt-entry[data-index='${leaf.index}']`)
    .click();
  const fields = await w
    .locator(".mmulab-detail tr[data-field]")
    .evaluateAll((els) => els.map((e) => e.dataset.field));
  const value = BigInt(leaf.value);
  const names = {
    R: EPT.R,
    W: EPT.W,
    X: EPT.X,
    PS: EPT.PS,
    A: EPT.A,
    D: EPT.D,
    MMU_P: EPT.MMU_P,
    HOST_W: EPT.HOST_W,
    MMU_W: EPT.MMU_W,
  };
  const expected = Object.entries(names)
    .filter(([, bit]) => (value >> BigInt(bit)) & 1n)
    .map(([n]) => n);
  assert.deepEqual(fields.sort(), expected.sort());
  assert.match(
    await w.locator(".mmulab-detail").textContent(),
    /shadow page role.*level 1, direct/,
  );
});

test("a shadow-mode tree made by the simulator: x86 spte bits with KVM's software bits, page states", {
  timeout: TIMEOUT.page,
}, async () => {
  // The real simulator (core/dist) under shadow paging: the S5 guest after a user read of
  // 0x400000 and a kernel store that made its PT (gfn 0x103) unsync.
  const core = createRequire(import.meta.url)(path.join(repo, "core", "dist", "cjs", "index.js"));
  const vm = core.createVm({ mmu: "shadow" });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x4000 * 4096, flags: 0 });
  const w64 = (gpa, v) => vm.guestWrite64(gpa, v);
  w64(0x100000, 0x101007n);
  w64(0x101000, 0x102007n);
  w64(0x102010, 0x103007n);
  w64(0x103000, 0x200007n);
  w64(0x101008, 0x104007n);
  w64(0x104000, 0x105007n);
  w64(0x105008, 0x103007n);
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 3 });
  vcpu.access(0x400000);
  vcpu.setCpl(0);
  vcpu.write(0x40001028, 0x300007n);
  const payload = vm.snapshot().payload();
  const tree = payload.trees[0];
  assert.equal(tree.kind, "shadow");
  const w = await render(payload);
  // Root entry 0 → PDPT entry 0 → PD entry 2 → the PT; its entry 0 maps gva 0x400000.
  const toPt = tree.root.entries[0].child.entries[0].child.entries.find((e) => e.index === 2);
  const leaf = toPt.child.entries.find((e) => e.index === 0);
  await w.locator(`.mmulab-pt-table[data-path='0.0.0.2'] .mmulab-pt-entry[data-index='0']`).click();
  const fields = await w
    .locator(".mmulab-detail tr[data-field]")
    .evaluateAll((els) => els.map((e) => e.dataset.field));
  // Expected from the x86 spte layout: P 0, R/W 1, U/S 2, A 5, D 6, HOST_W 9, MMU_W 10, MMU_P 11, XD 63.
  const names = { P: 0, "R/W": 1, "U/S": 2, A: 5, D: 6, HOST_W: 9, MMU_W: 10, MMU_P: 11, XD: 63 };
  const value = BigInt(leaf.value);
  const expected = Object.entries(names)
    .filter(([, bit]) => (value >> BigInt(bit)) & 1n)
    .map(([n]) => n);
  assert.deepEqual(fields.sort(), expected.sort());
  // A user-readable, clean leaf: present, user, accessed, KVM's host-writable and MMU-present.
  assert.deepEqual(expected.sort(), ["A", "HOST_W", "MMU_P", "P", "U/S"].sort());
  const text = await w.textContent();
  assert.match(text, /indirect sp \d+, gfn 0x103, write-protected, unsync/);
  assert.match(text, /write-tracked/);
});

test("walk: a successful 2 MiB translation and a #GP", { timeout: TIMEOUT.page }, async () => {
  const ok = walkPayload();
  ok.levels = ok.levels.slice(0, 3);
  ok.levels[2].leaf = true;
  ok.result = { fault: false, gpa: "0x60b123", pageSize: 2097152 };
  const w = await render(ok, WALK_MIME);
  assert.equal(await w.locator(".mmulab-walk-level").count(), 3);
  assert.match(await w.locator(".mmulab-walk-ok").textContent(), /gpa 0x60b123 · 2 MiB page/);
  const gp = walkPayload();
  gp.levels = [];
  gp.result = { fault: true, vector: 13, errorCode: 0, reason: "non-canonical address" };
  const g = await render(gp, WALK_MIME);
  assert.match(
    await g.locator(".mmulab-walk-fault-title").textContent(),
    /#GP general protection fault \(vector 13\)/,
  );
});

test("a renderer failure is drawn in the widget (plotly cannot load in this page)", {
  timeout: TIMEOUT.page,
}, async () => {
  const w = await render(
    { data: [{ type: "bar", x: [1], y: [2] }] },
    "application/vnd.plotly.v1+json",
  );
  await w.locator(".mmulab-error").waitFor();
  assert.match(
    await w.locator(".mmulab-error-title").textContent(),
    /renderer failed on this plotly figure/,
  );
  assert.deepEqual(fx.pageErrors, []);
});

test("an entry's toggle and its child table's toggle expand and collapse the same table", {
  timeout: TIMEOUT.page,
}, async () => {
  const { guest } = smallSnapshot();
  const w = await render({ version: 1, kind: "pagetable", trees: [guest] });
  const entryToggle = w.locator(".mmulab-pt-entry[data-path='0.0.0.2'] > .mmulab-entry-toggle");
  const table = w.locator(".mmulab-pt-table[data-path='0.0.0.2']");
  const headToggle = table.locator(":scope > .mmulab-pt-table-head > .mmulab-toggle");
  const body = table.locator(":scope > .mmulab-pt-body");
  // A small snapshot opens fully.
  assert.equal(await body.isVisible(), true);
  assert.equal(await entryToggle.getAttribute("aria-expanded"), "true");
  await entryToggle.click();
  assert.equal(await body.isVisible(), false);
  assert.equal(await headToggle.getAttribute("aria-expanded"), "false");
  assert.equal(await entryToggle.getAttribute("aria-expanded"), "false");
  await headToggle.click();
  assert.equal(await body.isVisible(), true);
  assert.equal(await entryToggle.getAttribute("aria-expanded"), "true");
});
