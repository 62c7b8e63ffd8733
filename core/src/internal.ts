/**
 * `@mmulab/core/internal`: the model's internals, for tests, conformance suites and experiments
 * that need to reach below the curated API (the shadow-page store, the spte format, the MMUs and
 * their sinks, the simulated CPU). Nothing here is stable between versions; notebooks should use
 * `@mmulab/core`.
 */
export * from "./arch/addr";
export * from "./arch/constants";
export * from "./arch/guest_pte";
export * from "./arch/permission";
export * from "./arch/reg_names";
export * from "./cpu/cpu";
export { EptWalker } from "./cpu/ept";
export * from "./era/features";
export * from "./errors";
export * from "./index";
export * from "./kvm/host";
export * from "./kvm/kvm_main";
export * from "./kvm/memcg";
export * from "./kvm/memory";
export * from "./kvm/memslot";
export * from "./kvm/stats";
export * from "./mmu/mmu";
export * from "./mmu/mmu_audit";
export * from "./mmu/mmu_internal";
export * from "./mmu/mmutrace";
export * from "./mmu/paging_tmpl";
export * from "./mmu/spte";
export * from "./mmu/tdp_iter";
export * from "./mmu/tdp_mmu";
export * from "./x86/vcpu";
export * from "./x86/x86";
