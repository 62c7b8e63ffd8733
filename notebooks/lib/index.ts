/**
 * @mmulab/notebooks: helpers the notebooks import (the page-walk lab's machine and `check()`).
 */
export * as pageWalkLab from "./page-walk-lab";
export { CheckResult, check, createLab, exercises, REGIONS, regions } from "./page-walk-lab";
export { describeErrorCode, explainErrorCode, hex } from "./words";
