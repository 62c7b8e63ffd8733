/** Display support shared by core objects, the kernel and the lab extension. */

export * from "./bundle";
export * from "./changes";
export * from "./types";
export * from "./validate";
