import type { Vm } from "../src";

/** The reasons of the remote TLB flushes (`mmulab_flush_remote_tlbs`) `op` makes on `vm`, in order. */
export function flushReasons(vm: Vm, op: () => void): string[] {
  vm.startTrace(10000);
  op();
  return vm
    .stopTrace()
    .events.filter((e) => e.name === "mmulab_flush_remote_tlbs")
    .map((e) => String(e.fields.reason));
}
