/** @mmulab/core public API. */
export * from "./display";
