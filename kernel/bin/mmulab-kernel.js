#!/usr/bin/env node

// Entry point of the `mmulab-kernel` command; the code lives in dist/ (run `npm run build`).
require("../dist/cli.js")
  .main(process.argv.slice(2))
  .then((code) => {
    if (code >= 0) process.exitCode = code;
  })
  .catch((e) => {
    process.stderr.write(`mmulab-kernel: ${e?.stack ?? e}\n`);
    process.exit(1);
  });
