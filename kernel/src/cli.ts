/**
 * Command line of `mmulab-kernel`:
 *   mmulab-kernel install [--user | --prefix P]   write the kernelspec (+ lab extension)
 *   mmulab-kernel kernel --connection-file F       run the kernel (Jupyter starts it so)
 */

import { type InstallTarget, install } from "./install";
import { runKernel } from "./kernel";

const USAGE = `usage:
  mmulab-kernel install [--user | --prefix <dir>]
      writes <data>/kernels/mmulab/kernel.json ("TypeScript (mmulab)") and copies the built
      lab extension to <data>/labextensions/@mmulab/lab-extension; <data> is <dir>/share/jupyter
      with --prefix, the user's Jupyter data dir with --user (the default)
  mmulab-kernel kernel --connection-file <file>
      runs the kernel (used by Jupyter)`;

/** Runs the CLI; returns the exit code (the kernel command never returns while running). */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === "install") {
    let target: InstallTarget = { kind: "user" };
    for (let i = 0; i < rest.length; i++) {
      const a = rest[i];
      if (a === "--user") target = { kind: "user" };
      else if (a === "--prefix" && rest[i + 1] !== undefined)
        target = { kind: "prefix", prefix: rest[++i]! };
      else if (a?.startsWith("--prefix="))
        target = { kind: "prefix", prefix: a.slice("--prefix=".length) };
      else {
        process.stderr.write(
          `mmulab-kernel install: unknown argument ${JSON.stringify(a)}\n${USAGE}\n`,
        );
        return 2;
      }
    }
    const r = install(target);
    process.stdout.write(`installed kernelspec "mmulab" in ${r.kernelDir}\n`);
    process.stdout.write(
      r.labExtensionDir
        ? `installed lab extension in ${r.labExtensionDir}\n`
        : "lab extension not built (lab-extension/labextension missing): kernelspec only\n",
    );
    return 0;
  }
  if (command === "kernel") {
    let file: string | undefined;
    for (let i = 0; i < rest.length; i++) {
      const a = rest[i]!;
      if ((a === "--connection-file" || a === "-f") && rest[i + 1] !== undefined) file = rest[++i];
      else if (a.startsWith("--connection-file=")) file = a.slice("--connection-file=".length);
    }
    if (file === undefined) {
      process.stderr.write(
        `mmulab-kernel kernel: --connection-file <file> is required\n${USAGE}\n`,
      );
      return 2;
    }
    await runKernel(file);
    return -1;
  }
  process.stderr.write(
    `${command === undefined ? "" : `unknown command ${JSON.stringify(command)}\n`}${USAGE}\n`,
  );
  return command === "--help" || command === "-h" ? 0 : 2;
}
