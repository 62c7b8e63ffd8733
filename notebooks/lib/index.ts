/**
 * @mmulab/notebooks: helpers the notebooks import (the classroom labs' machines and `check()`).
 */
export { CheckResult } from "./check";
export * as pageWalkLab from "./page-walk-lab";
export { check, createLab, exercises, REGIONS, regions } from "./page-walk-lab";
export * as shadowPagingLab from "./shadow-paging-lab";
export { describeErrorCode, explainErrorCode, hex } from "./words";
