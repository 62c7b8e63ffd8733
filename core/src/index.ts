/**
 * @mmulab/core public API: a simulator of the Linux KVM x86 MMU.
 *
 * Start with {@link createVm}: add memslots, write guest page tables (see
 * {@link GuestPageTableBuilder}), create a vCPU, load its registers and make accesses.
 */
export * from "./addr";
// TDP MMU (issue 3)
export * from "./audit";
export * from "./constants";
export * from "./display";
export * from "./direct_mmu";
export * from "./errors";
export * from "./guest_pte";
export * from "./host";
export * from "./legacy_direct";
export * from "./lpage";
export * from "./memory";
export * from "./memslot";
export * from "./mmu";
export * from "./mmu_introspect";
export * from "./mmu_page";
export * from "./paging_tmpl";
export * from "./permission";
export * from "./pgtable_builder";
export * from "./rmap";
export * from "./role";
export * from "./spte";
export * from "./stats";
export * from "./tdp_iter";
export * from "./tdp_mmu";
export * from "./vcpu";
export * from "./vm";
export * from "./views";
