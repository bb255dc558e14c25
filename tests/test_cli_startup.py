"""The commands that only print (help, the component list, the configuration) import no heavy library.

Importing torch alone takes seconds; `infuser --help` answering at once depends on parsing never
importing it (see infuser.lazy). Each command runs in a fresh interpreter, which then reports the
heavy libraries it imported; `benchmarks/cli_startup.py` measures the times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "transformers", "peft", "bitsandbytes", "matplotlib")

# Runs the CLI in-process, then prints which heavy libraries it imported (exit status kept).
_PROBE = """
import json, sys
from infuser.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
print(json.dumps({"status": status, "imported": [m for m in %r if m in sys.modules]}), file=sys.stderr)
""" % (HEAVY,)


def _imports(arguments: list[str]) -> tuple[int, list[str]]:
    result = subprocess.run([sys.executable, "-c", _PROBE, *arguments], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["status"], report["imported"]


@pytest.mark.parametrize("arguments", [
    ["--help"],
    ["list"],
    ["list", "influence"],
    ["fit", "--help"],
    ["fit", "--config", "configs/toy.yaml", "--print_config"],
    ["fit", "--config", "configs/toy.yaml", "--influence", "lora_grad", "--generator_reward", "spice_variance",
     "--print_config"],
    ["plot", "--help"],
    ["bench", "--help"],
], ids=" ".join)
def test_printing_commands_import_no_heavy_library(arguments):
    status, imported = _imports(arguments)
    assert status in (0, None)
    assert imported == [], (f"`infuser {' '.join(arguments)}` imported {imported}; run it under "
                            "`python -X importtime` to see which infuser module pulled them in")
