/**
 * MMU self-audit in the spirit of KVM's mmu_audit.c (v2.6.36–v5.12): walks every root and checks
 * spte invariants, parent/child links, that every leaf maps the host frame backing its gfn at an
 * allowed level, the seed-2010 gfn formula against stored arrays, rmap ⇔ leaf agreement where
 * rmaps exist, and that every gauge equals a recount. Returns the violations (empty = clean).
 * Reads the model; the model never calls it. Not for hot paths.
 */
import { hexNum as hex } from "../arch/addr";
import { hostPfn } from "../kvm/host";
import type { MemSlot, MemSlots } from "../kvm/memslot";
import { pteListContains, pteListForEach, type VmMmu } from "./mmu";
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
  isPossiblyWritable,
  isShadowPresent,
  mmioSpteGen,
  mmioSpteGfn,
  SPTE_W,
  spteInvariantViolation,
  sptePfn,
} from "./spte";

const MAX_REPORTS = 200;

/**
 * Dirty logging with a bitmap: a leaf the CPU may write without exiting must cover only gfns
 * already dirty, or a write through it would never be logged (KVM keeps this by marking the page
 * dirty whenever it makes an spte writable, `mark_page_dirty_in_slot`, and by write-protecting
 * what it clears, `kvm_arch_mmu_enable_log_dirty_pt_masked`). With PML the CPU logs through the D
 * bit instead, and the dirty ring keeps no bitmap, so neither is checked. Returns the first gfn
 * that breaks it, or -1.
 */
function writableUndirtied(
  mmu: VmMmu,
  slot: MemSlot,
  lo: number,
  gfn: number,
  span: number,
): number {
  const bm = slot.dirtyBitmap;
  if (bm === null || (lo & SPTE_W) === 0 || mmu.kvm.features.pml || mmu.kvm.dirtyRingEntries !== 0)
    return -1;
  for (let g = gfn; g < gfn + span; g++) {
    const rel = g - slot.baseGfn;
    if (((bm[rel >>> 5]! >>> (rel & 31)) & 1) === 0) return g;
  }
  return -1;
}

/** Audit the MMU of a VM; returns human-readable violations. */
export function auditMmu(mmu: VmMmu, slots: MemSlots): string[] {
  const pw = auditPossibleWritable(mmu);
  if (mmu.shadowPaging) return [...pw, ...auditShadowPaging(mmu, slots)];
  const out: string[] = pw;
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
      const inv = spteInvariantViolation(lo, hi, level, store.pwTrack);
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
        if (
          legacy !== null
            ? !pteListContains(legacy.rmapPool, store.parentPtes, child, sp * 512 + i)
            : store.parentSp[child] !== sp || store.parentIdx[child] !== i
        ) {
          report(`${where}: child sp ${child} does not record this entry as its parent`);
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
      const undirtied = writableUndirtied(mmu, slot, lo, gfn, span);
      if (undirtied >= 0)
        report(
          `${where}: writable leaf in dirty-logged slot ${slot.id} but gfn ${hex(undirtied)} is not dirty in its bitmap`,
        );
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
    if (legacy !== null ? store.parentPtes[root] !== 0 : store.parentSp[root] !== -1)
      report(`root sp ${root} has a parent`);
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
    if (store.parentPtes[sp] !== 0) continue; // reached through its orphaned ancestor below
    orphans++;
    seen[sp] = 1;
    visit(sp, roleLevel(store.role[sp]!), store.gfn[sp]!);
  }
  for (let sp = 0; sp < store.created; sp++) {
    if (store.isLive(sp) && !seen[sp]) report(`sp ${sp} records a parent but no entry links it`);
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
      mmu.requestedMmuPages !== 0
        ? mmu.requestedMmuPages
        : Math.max(Math.floor(slots.totalPages() / 50), 64),
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
      for (let h = legacy.hash[legacy.hashOf(store.gfn[sp]!)]!; h >= 0; h = store.hashNext[h]!) {
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

/**
 * The audit of a shadow-paging VM (`ept=0`): every live page of the rmap MMU, by its own gfn and
 * role rather than from a root by gpa.
 * - links: each present non-leaf entry is in its child's `parent_ptes` and each parent entry
 *   points back; roots have no parents;
 * - leaves: on the rmap of the gfn `kvm_mmu_page_get_gfn` gives, mapping that gfn's host frame;
 * - write tracking: `gfn_write_track` equals a recount of valid upper-level indirect pages per
 *   gfn, `indirect_shadow_pages` the count of valid indirect pages, and every `disallow_lpage`
 *   equals the slot's alignment start value plus the shadowed gfns in its range;
 * - unsync: each page's `unsync_children` equals the bits of its bitmap, every unsync page (or
 *   page with unsync children) has its bit set in each parent, `mmu_unsync` counts the unsync
 *   pages, only level-1 indirect pages are unsync;
 * - coherence: in a synced indirect page no leaf allows more than its gpte (present, same gfn,
 *   rights within `role.access` & the gpte's, W only with D — except the CR0.WP=0 supervisor
 *   write, W without U).
 */
function auditShadowPaging(mmu: VmMmu, slots: MemSlots): string[] {
  const out: string[] = [];
  const report = (msg: string) => {
    if (out.length < MAX_REPORTS) out.push(msg);
  };
  const store = mmu.store;
  const sh = mmu.shadow!;
  const stats = mmu.stats;
  const g = new Uint32Array(2);
  let indirect = 0;
  let unsyncPages = 0;
  const tracked = new Map<number, number>();
  const shadowedGfns: number[] = [];
  for (let sp = 0; sp < store.created; sp++) {
    if (!store.isLive(sp)) continue;
    const role = store.role[sp]!;
    const level = roleLevel(role);
    const valid = !roleInvalid(role) && !sh.isObsolete(sp);
    const direct = roleDirect(role);
    const where = `sp ${sp} (level ${level}, gfn ${hex(store.gfn[sp]!)}${direct ? ", direct" : ""})`;
    if (!direct && !roleInvalid(role)) {
      indirect++;
      shadowedGfns.push(store.gfn[sp]!);
      if (level > 1) tracked.set(store.gfn[sp]!, (tracked.get(store.gfn[sp]!) ?? 0) + 1);
    }
    if (store.unsync[sp] !== 0) {
      unsyncPages++;
      if (direct || level !== 1) report(`${where}: unsync but not an indirect level-1 page`);
    }
    let bits = 0;
    for (let w = 0; w < 16; w++) {
      let b = store.unsyncBitmap[sp * 16 + w]!;
      while (b !== 0) {
        b &= b - 1;
        bits++;
      }
    }
    if (bits !== store.unsyncChildren[sp])
      report(`${where}: unsync_children ${store.unsyncChildren[sp]} but ${bits} bitmap bits`);
    for (const sptep of sh.parentPtesOf(sp)) {
      const p = Math.floor(sptep / 512);
      const i = sptep % 512;
      const lo = store.isLive(p) ? store.spt[p]![i * 2]! : 0;
      if (!isShadowPresent(lo) || store.pfnToSp(sptePfn(lo, store.spt[p]![i * 2 + 1]!)) !== sp)
        report(`${where}: parent entry sp ${p}[${i}] does not point at it`);
      else if (
        (store.unsync[sp] !== 0 || store.unsyncChildren[sp]! > 0) &&
        ((store.unsyncBitmap[p * 16 + (i >>> 5)]! >>> (i & 31)) & 1) === 0
      )
        report(`${where}: has unsync state but bit ${i} of parent sp ${p} is clear`);
    }
    if (store.rootCount[sp]! > 0 && store.parentPtes[sp] !== 0)
      report(`${where}: a root with parents`);
    const spt = store.spt[sp]!;
    for (let i = 0; i < 512; i++) {
      const lo = spt[i * 2]!;
      const hi = spt[i * 2 + 1]!;
      if (!isShadowPresent(lo)) continue;
      const w = `${where} entry ${i}`;
      const inv = spteInvariantViolation(lo, hi, level, store.pwTrack);
      if (inv !== "") report(`${w}: ${inv}`);
      if (!isLastSpte(lo, level)) {
        const child = store.pfnToSp(sptePfn(lo, hi));
        if (!store.isLive(child)) report(`${w}: points at a page that is not allocated`);
        else if (!pteListContains(sh.rmapPool, store.parentPtes, child, sp * 512 + i))
          report(`${w}: child sp ${child} does not list this entry as a parent`);
        continue;
      }
      const gfn = kvmMmuPageGetGfn(store, sp, i, false);
      const slot = slots.gfnToSlot(gfn);
      if (slot === undefined) {
        report(`${w}: leaf for gfn ${hex(gfn)} outside every memslot`);
        continue;
      }
      const undirtied = writableUndirtied(mmu, slot, lo, gfn, GFN_SPAN[level]!);
      if (undirtied >= 0)
        report(
          `${w}: writable leaf in dirty-logged slot ${slot.id} but gfn ${hex(undirtied)} is not dirty in its bitmap`,
        );
      if (sptePfn(lo, hi) !== hostPfn(slot, gfn))
        report(`${w}: leaf pfn ${hex(sptePfn(lo, hi))} is not the frame of gfn ${hex(gfn)}`);
      const heads = slot.arch instanceof SlotArch ? slot.arch.rmap?.heads[level - 1] : undefined;
      if (
        heads === undefined ||
        !pteListContains(sh.rmapPool, heads, gfnToIndex(gfn, slot.baseGfn, level), sp * 512 + i)
      )
        report(`${w}: leaf for gfn ${hex(gfn)} is not on its rmap`);
      // Coherence of synced indirect pages with the guest's tables.
      if (direct || !valid || store.unsync[sp] !== 0) continue;
      // The gpte behind the entry: 8-byte tables map 1:1; a page shadowing 4-byte gptes covers
      // half a guest PT (level 1, by quadrant) or, at level 2, a quarter of the guest PD with
      // two shadow entries per 4 MiB guest entry.
      const wide = (role & (1 << 4)) === 0;
      const q = (role >>> 5) & 3;
      const gpteIdx = wide ? i : level === 1 ? q * 512 + i : q * 256 + (i >>> 1);
      if (!mmu.readGuestPte(store.gfn[sp]! * 4096 + gpteIdx * (wide ? 8 : 4), wide, g)) {
        report(`${w}: its gpte cannot be read`);
        continue;
      }
      const glo = g[0]!;
      const ghi = g[1]!;
      if ((glo & 1) === 0) {
        report(`${w}: maps gfn ${hex(gfn)} but its gpte is not present`);
        continue;
      }
      let ggfn: number;
      if (wide) {
        ggfn = (ghi & 0xfffff) * 1048576 + (glo >>> 12);
        if (level > 1) ggfn -= ggfn % GFN_SPAN[level]!;
      } else if (level === 1) ggfn = glo >>> 12;
      else {
        // A 4 MiB page (PSE-36 bits 16:13 give address bits 35:32); this entry maps one half.
        ggfn = (glo >>> 22) * 1024 + ((glo >>> 13) & 15) * 1048576 + (i & 1) * 512;
      }
      if (ggfn !== gfn) report(`${w}: maps gfn ${hex(gfn)}, its gpte says ${hex(ggfn)}`);
      const allowed = (role >>> 8) & 7 & (((glo & 6) | 1) ^ (ghi >>> 31));
      const user = (lo & 1) !== 0; // the user bit of our sptes is EPT's R (shadow_user_mask)
      const write = (lo & 2) !== 0;
      const exec = (lo & 4) !== 0;
      const wp0Write = (role & (1 << 13)) === 0 && !user;
      if (user && (allowed & 4) === 0) report(`${w}: user access its gpte does not allow`);
      if (exec && (allowed & 1) === 0) report(`${w}: exec access its gpte does not allow`);
      if (write && (allowed & 2) === 0 && !wp0Write)
        report(`${w}: write access its gpte does not allow`);
      if (write && (glo & 0x40) === 0) report(`${w}: writable while its gpte is clean (D = 0)`);
    }
  }
  if (unsyncPages !== stats.mmu_unsync)
    report(`mmu_unsync ${stats.mmu_unsync}, recount ${unsyncPages}`);
  if (indirect !== stats.indirect_shadow_pages)
    report(`indirect_shadow_pages ${stats.indirect_shadow_pages}, recount ${indirect}`);
  for (const slot of slots.list()) {
    const arch = slot.arch instanceof SlotArch ? slot.arch : null;
    if (arch === null) continue;
    const fresh = new SlotArch(slot);
    for (const gfn of shadowedGfns) {
      if (gfn < slot.baseGfn || gfn >= slot.baseGfn + slot.npages) continue;
      for (let l = 2; l <= 3; l++) fresh.lpageInfo[l - 2]![gfnToIndex(gfn, slot.baseGfn, l)]!++;
    }
    for (let l = 2; l <= 3; l++) {
      const a = arch.lpageInfo[l - 2]!;
      const b = fresh.lpageInfo[l - 2]!;
      for (let i = 0; i < a.length; i++)
        if (a[i] !== b[i])
          report(
            `slot ${slot.id} lpage_info[level ${l}][${i}] disallow_lpage ${a[i]}, expected ${b[i]}`,
          );
    }
    const t = arch.gfnWriteTrack;
    for (let i = 0; i < slot.npages; i++) {
      const have = t === null ? 0 : t[i]!;
      const want = tracked.get(slot.baseGfn + i) ?? 0;
      if (have !== want)
        report(
          `gfn ${hex(slot.baseGfn + i)}: gfn_write_track ${have}, shadowed upper-level tables ${want}`,
        );
    }
  }
  return out;
}

/** Seed 2017: every page's possible-writable bitmap and count equal a recount of its entries. */
function auditPossibleWritable(mmu: VmMmu): string[] {
  const out: string[] = [];
  const s = mmu.store;
  if (!s.pwTrack) return out;
  for (let sp = 0; sp < s.created && out.length < MAX_REPORTS; sp++) {
    if (!s.isLive(sp)) continue;
    let n = 0;
    for (let i = 0; i < 512; i++) {
      const want = isPossiblyWritable(s.spt[sp]![i * 2]!, s.spt[sp]![i * 2 + 1]!);
      const have = ((s.pwBitmap[sp * 16 + (i >>> 5)]! >>> (i & 31)) & 1) === 1;
      if (want) n++;
      if (want !== have)
        out.push(
          `sp ${sp} entry ${i}: possible-writable bit ${have ? 1 : 0}, recount ${want ? 1 : 0}`,
        );
    }
    if (n !== s.pwCount[sp])
      out.push(`sp ${sp}: possible-writable count ${s.pwCount[sp]}, recount ${n}`);
  }
  return out;
}
