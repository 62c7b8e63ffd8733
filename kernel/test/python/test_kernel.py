"""jupyter_kernel_test suite for the mmulab kernel (run by kernel/test/python.test.ts).

JUPYTER_PATH must point at a data dir holding kernels/mmulab (the runner installs it first).
"""
import unittest

import jupyter_kernel_test


class MmulabKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "mmulab"
    language_name = "typescript"
    file_extension = ".ts"

    code_hello_world = 'console.log("hello, world")'
    code_stderr = 'console.error("some error")'

    completion_samples = [
        {"text": "Math.PI.toFix", "matches": {"toFixed"}},
        {"text": 'const greeting_text = "hi"; greeting_te', "matches": {"greeting_text"}},
    ]

    complete_code_samples = ["1 + 2", "const a = 1;", "function f() {\n  return 1;\n}"]
    incomplete_code_samples = ["function f() {", "const xs = [1,", "if (true) {\n  console.log(1);"]

    code_generate_error = 'throw new Error("boom")'

    code_execute_result = [
        {"code": "1 + 2", "result": "3"},
        {"code": '"mm" + "u"', "result": "mmu"},
        {"code": "[1, 2].map((x) => x * 2)", "result": "[ 2, 4 ]"},
    ]
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "1 +*"

    code_display_data = [
        {
            "code": 'import { display } from "@mmulab/kernel";\n'
            'display({ version: 1, kind: "walk", mode: "4-level", gva: "0x1000", '
            "access: { write: false, user: false, fetch: false }, levels: [], "
            'result: { fault: false, gpa: "0x2000" } });',
            "mime": "application/vnd.mmulab.walk+json",
        },
        {
            "code": 'import { display } from "@mmulab/kernel";\n'
            'display({ version: 1, kind: "walk", mode: "4-level", gva: "0x1000", '
            "access: { write: false, user: false, fetch: false }, levels: [], "
            'result: { fault: false, gpa: "0x2000" } });',
            "mime": "text/html",
        },
        {
            "code": 'import { displayBundle } from "@mmulab/kernel";\n'
            'displayBundle({ "text/html": "<b>hi</b>", "text/plain": "hi" });',
            "mime": "text/html",
        },
    ]

    code_inspect_sample = "Math.max"
    code_clear_output = 'import { clearOutput } from "@mmulab/kernel";\nclearOutput();'

    def test_pager(self):
        raise unittest.SkipTest(
            "no pager payloads: TypeScript has no `?` help syntax; documentation is served by inspect_request"
        )


if __name__ == "__main__":
    unittest.main()
