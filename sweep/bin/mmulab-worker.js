#!/usr/bin/env node
// The built worker (sweep/src/queue_worker.ts); `npm run build -w @mmulab/sweep` makes it.
require("../dist/queue_worker.js").main(process.argv.slice(2));
