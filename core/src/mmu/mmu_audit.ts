/**
 * MMU self-audit in the spirit of KVM's mmu_audit.c (v2.6.36–v5.12): walks every root and checks
 * spte invariants, parent/child links, that every leaf maps the host frame backing its gfn at an
 * allowed level, the seed-2010 gfn formula against stored arrays, rmap ⇔ leaf agreement where
 * rmaps exist, and that every gauge equals a recount. Returns the violations (empty = clean).
 * Reads the model; the model never calls it. Not for hot paths.
 */
import { hexNum as hex } from "../arch/addr";
import { hostPfn } from "../kvm/host";
import type { MemSlots } from "../kvm/memslot";
import { kvmPageTableHashfn, pteListContains, pteListForEach, type VmMmu } from "./mmu";
import {
  directEntryGfn,
  gfnToIndex,
  kvmMmuPageGetGfn,
  roleDirect,
  roleInvalid,
  roleLevel,
  SlotArch,
  SP_TRANSLATION_ACCOUNTED,
} from "./mmu_internal";
import {
  GFN_SPAN,
  isHostWritable,
  isLastSpte,
  isMmioSpte,
  isShadowPresent,
  mmioSpteGen,
  mmioSpteGfn,
  spteInvariantViolation,
  sptePfn,
} from "./spte";

const MAX_REPORTS = 200;

/** Audit the MMU of a VM; returns human-readable violations. */
export function auditMmu(mmu: VmMmu, slots: MemSlots): string[] {
  const out: string[] = [];
  const report = (msg: string) => {
    if (out.length < MAX_REPORTS) out.push(msg);
  };
  const store = mmu.store;
  const stats = mmu.stats;
  const rootLevel = mmu.rootLevel;
  const seen = new Uint8Array(store.created);
  const leaves = [0, 0, 0, 0];
  let nonRoot = 0;
  const legacy = mmu.shadow;

  const visit = (sp: number, level: number, base: number): void => {
    const spt = store.spt[sp]!;
    const span = GFN_SPAN[level]!;
    const t = store.translation[sp];
    for (let i = 0; i < 512; i++) {
      const lo = spt[i * 2]!;
      const hi = spt[i * 2 + 1]!;
      if (lo === 0 && hi === 0) continue;
      const gfn = base + i * span;
      const where = `sp ${sp} (level ${level}, gfn ${hex(store.gfn[sp]!)}) entry ${i}`;
      if (isMmioSpte(lo)) {
        if (mmioSpteGfn(lo, hi) !== gfn)
          report(`${where}: MMIO spte holds gfn ${hex(mmioSpteGfn(lo, hi))}, maps ${hex(gfn)}`);
        if (level !== 1) report(`${where}: MMIO spte above level 1`);
        if (mmioSpteGen(lo, hi) === mmu.mmioGen && slots.gfnToSlot(gfn) !== undefined) {
          report(`${where}: current-generation MMIO spte for gfn ${hex(gfn)} which has a memslot`);
        }
        continue;
      }
      if (!isShadowPresent(lo)) {
        report(`${where}: non-zero spte ${hex(hi)}:${hex(lo)} is neither present nor MMIO`);
        continue;
      }
      const inv = spteInvariantViolation(lo, hi, level);
      if (inv !== "") report(`${where}: ${inv}`);
      if (!isLastSpte(lo, level)) {
        const child = store.pfnToSp(sptePfn(lo, hi));
        if (!store.isLive(child)) {
          report(
            `${where}: non-leaf spte points at pfn ${hex(sptePfn(lo, hi))}, not a live shadow page`,
          );
          continue;
        }
        if (seen[child]) {
          report(`${where}: child sp ${child} is linked twice`);
          continue;
        }
        seen[child] = 1;
        nonRoot++;
        if (store.parentSp[child] !== sp || store.parentIdx[child] !== i) {
          report(
            `${where}: child sp ${child} records parent sp ${store.parentSp[child]} entry ${store.parentIdx[child]}`,
          );
        }
        const crole = store.role[child]!;
        if (roleLevel(crole) !== level - 1)
          report(
            `${where}: child sp ${child} has level ${roleLevel(crole)}, expected ${level - 1}`,
          );
        if (!roleDirect(crole)) report(`${where}: child sp ${child} is not direct`);
        if (store.gfn[child] !== gfn)
          report(
            `${where}: child sp ${child} has gfn ${hex(store.gfn[child]!)}, expected ${hex(gfn)}`,
          );
        visit(child, level - 1, gfn);
        continue;
      }
      // Leaf.
      leaves[level]!++;
      const slot = slots.gfnToSlot(gfn);
      if (slot === undefined || gfn + span > slot.baseGfn + slot.npages) {
        report(`${where}: leaf maps gfn ${hex(gfn)}..+${span} which is not inside one memslot`);
        continue;
      }
      const want = hostPfn(slot, gfn);
      const pfn = sptePfn(lo, hi);
      if (pfn !== want)
        report(`${where}: leaf pfn ${hex(pfn)} but gfn ${hex(gfn)} is backed by pfn ${hex(want)}`);
      if (level > 1 && mmu.maxMappingLevel(slot, gfn, 3) < level) {
        report(
          `${where}: level-${level} leaf for gfn ${hex(gfn)} exceeds kvm_mmu_max_mapping_level ${mmu.maxMappingLevel(slot, gfn, 3)}`,
        );
      }
      if (isHostWritable(hi) === slot.readonly)
        report(
          `${where}: Host-writable ${isHostWritable(hi)} in a ${slot.readonly ? "read-only" : "writable"} slot`,
        );
      if (t) {
        const f = directEntryGfn(store.gfn[sp]!, level, i);
        if (t[i] !== f)
          report(`${where}: stored gfn ${hex(t[i]!)} differs from formula ${hex(f)} (seed 2010)`);
      }
      const arch = slot.arch instanceof SlotArch ? slot.arch : null;
      if (legacy !== null && arch?.rmap) {
        const head = gfnToIndex(gfn, slot.baseGfn, level);
        if (!pteListContains(legacy.rmapPool, arch.rmap.heads[level - 1]!, head, sp * 512 + i)) {
          report(
            `${where}: leaf for gfn ${hex(gfn)} is not on its rmap ${slot.id}/${level}/${head}`,
          );
        }
      } else if (legacy !== null) report(`${where}: leaf in slot ${slot.id} which has no rmaps`);
    }
  };

  for (const root of mmu.roots) {
    if (!store.isLive(root)) {
      report(`root sp ${root} is on tdp_mmu_roots but not allocated`);
      continue;
    }
    seen[root] = 1;
    if (roleLevel(store.role[root]!) !== rootLevel)
      report(`root sp ${root} has level ${roleLevel(store.role[root]!)}, expected ${rootLevel}`);
    if (store.parentSp[root] !== -1) report(`root sp ${root} has a parent`);
    if (store.rootCount[root]! <= 0)
      report(`root sp ${root} has root count ${store.rootCount[root]}`);
    if (roleInvalid(store.role[root]!)) {
      const spt = store.spt[root]!;
      for (let i = 0; i < 1024; i++) {
        if (spt[i] !== 0) {
          report(`invalid root sp ${root} still maps entry ${i >> 1}`);
          break;
        }
      }
    }
    visit(root, rootLevel, 0);
  }
  let orphans = 0;
  for (let sp = 0; sp < store.created; sp++) {
    if (!store.isLive(sp) || seen[sp]) continue;
    if (legacy === null) {
      report(
        `sp ${sp} (level ${roleLevel(store.role[sp]!)}) is allocated but unreachable (leaked)`,
      );
      continue;
    }
    // Legacy: parentless pages (orphans) stay allocated with their leaves still rmapped.
    if (store.parentSp[sp] !== -1) continue; // reached through its orphaned ancestor below
    orphans++;
    seen[sp] = 1;
    visit(sp, roleLevel(store.role[sp]!), store.gfn[sp]!);
  }
  for (let sp = 0; sp < store.created; sp++) {
    if (store.isLive(sp) && !seen[sp])
      report(`sp ${sp} records parent sp ${store.parentSp[sp]} but no entry links it`);
  }
  // Reverse direction: every rmap entry is a present leaf of the gfn its head stands for.
  let rmapEntries = 0;
  if (legacy !== null) {
    for (const slot of slots.list()) {
      const arch = slot.arch instanceof SlotArch ? slot.arch : null;
      if (!arch?.rmap) continue;
      for (let l = 1; l <= 3; l++) {
        const heads = arch.rmap.heads[l - 1]!;
        for (let i = 0; i < heads.length; i++) {
          if (heads[i] === 0) continue;
          pteListForEach(legacy.rmapPool, heads, i, (sptep) => {
            rmapEntries++;
            const sp = Math.floor(sptep / 512);
            const idx = sptep % 512;
            const lo = store.isLive(sp) ? store.spt[sp]![idx * 2]! : 0;
            const ok =
              store.isLive(sp) &&
              roleLevel(store.role[sp]!) === l &&
              isShadowPresent(lo) &&
              isLastSpte(lo, l) &&
              gfnToIndex(kvmMmuPageGetGfn(store, sp, idx, false), slot.baseGfn, l) === i &&
              slots.gfnToSlot(kvmMmuPageGetGfn(store, sp, idx, false)) === slot;
            if (!ok) {
              report(
                `rmap ${slot.id}/${l}/${i} holds sptep ${sptep} (sp ${sp} entry ${idx}) which is not a present leaf of that gfn`,
              );
            }
          });
        }
      }
    }
  }

  // Gauges against recounts.
  const gauge = (name: string, have: number, want: number) => {
    if (have !== want) report(`gauge ${name} = ${have}, recount = ${want}`);
  };
  gauge("pages_4k", stats.pages_4k, leaves[1]!);
  gauge("pages_2m", stats.pages_2m, leaves[2]!);
  gauge("pages_1g", stats.pages_1g, leaves[3]!);
  gauge("tdp_mmu_pages", stats.tdp_mmu_pages, legacy === null ? nonRoot : 0);
  gauge("spt_pages_live", stats.spt_pages_live, store.live);
  if (legacy === null)
    gauge("spt_pages_live (reachable)", stats.spt_pages_live, nonRoot + mmu.roots.length);
  let accounted = 0;
  for (let sp = 0; sp < store.created; sp++)
    if (store.isLive(sp) && store.flags[sp]! & SP_TRANSLATION_ACCOUNTED) accounted++;
  gauge("translation_pages_live", stats.translation_pages_live, accounted);
  // Legacy: every live page is accounted (on the active list, or a zapped root still pinned).
  gauge("n_used_mmu_pages", stats.n_used_mmu_pages, legacy === null ? 0 : store.live);
  if (legacy === null) {
    gauge(
      "n_max_mmu_pages",
      stats.n_max_mmu_pages,
      Math.max(Math.floor(slots.totalPages() / 50), 64),
    );
  } else {
    let onList = 0;
    for (let sp = legacy.listHead; sp >= 0; sp = store.next[sp]!) {
      onList++;
      if (!store.isLive(sp)) report(`active_mmu_pages holds freed sp ${sp}`);
      if (onList > store.created) {
        report("active_mmu_pages has a cycle");
        break;
      }
    }
    let pinnedInvalid = 0;
    for (let sp = 0; sp < store.created; sp++) {
      if (!store.isLive(sp)) continue;
      if (roleInvalid(store.role[sp]!)) {
        if (store.rootCount[sp]! > 0) pinnedInvalid++;
        else report(`sp ${sp} is invalid and unpinned but not freed`);
        continue;
      }
      let found = false;
      for (
        let h = legacy.hash[kvmPageTableHashfn(store.gfn[sp]!)]!;
        h >= 0;
        h = store.hashNext[h]!
      ) {
        if (h === sp) found = true;
      }
      if (!found) report(`sp ${sp} (gfn ${hex(store.gfn[sp]!)}) is missing from its hash bucket`);
    }
    gauge("active_mmu_pages length", onList, store.live - pinnedInvalid);
    gauge("orphan_sps", legacy.orphanCount(), orphans);
  }
  gauge(
    "mmu_data_pages_allocated - freed",
    stats.mmu_data_pages_allocated - stats.mmu_data_pages_freed,
    stats.spt_pages_live + stats.translation_pages_live,
  );

  // rmap ⇔ leaf: the TDP MMU keeps no rmaps (kvm_memslots_have_rmaps is false until a shadow
  // root exists), so every slot's rmap must be absent; the legacy flavour checks both directions.
  for (const slot of slots.list()) {
    const arch = slot.arch instanceof SlotArch ? slot.arch : null;
    if (arch === null) report(`slot ${slot.id} has no arch metadata (lpage_info)`);
    else if (legacy === null && arch.rmap !== null)
      report(`slot ${slot.id} has rmaps under the TDP MMU`);
  }
  if (legacy !== null) gauge("rmap entries", rmapEntries, leaves[1]! + leaves[2]! + leaves[3]!);
  return out;
}
