/**
 * @mmulab/core public API: a simulator of the Linux KVM x86 MMU.
 *
 * Start with {@link createVm}: add memslots, write guest page tables (see
 * {@link GuestPageTableBuilder}), create a vCPU, load its registers and make accesses.
 */
export * from "./addr";
export * from "./constants";
export * from "./display";
export * from "./errors";
export * from "./guest_pte";
export * from "./memory";
export * from "./memslot";
export * from "./paging_tmpl";
export * from "./permission";
export * from "./vcpu";
export * from "./vm";
