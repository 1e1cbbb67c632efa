"""Where the functions run and how big they are: the Architecture parameter (arm64 by default)
reaches every function and layer; the dependencies layer is built for it without a container,
every compiled module in it for that processor; `make build` builds the template's default, what
runs the build on this machine builds for this machine, and a deploy deploys what was built; each
function's memory is a bounded parameter, the chat function's sized to the issue's cost target."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.build.test_deploy_template import ENVIRONMENTS, FUNCTIONS, deployed, document, of_type, overrides
from tests.support.paths import ROOT

SAM = str(Path(sys.executable).with_name("sam"))
ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
ARCHITECTURES = ("arm64", "x86_64")
# ELF e_machine of each Lambda architecture.
E_MACHINE = {"arm64": 183, "x86_64": 62}
HOST = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
# Each function's memory (MB) by default, from the measurements in docs/performance.md (Memory
# and architecture): peak RSS under load with headroom, cold start from the CPU share.
MEMORY = {"AuthorizerFunction": 512, "OpsFunction": 256, "RegisterFunction": 256, "ChatFunction": 208,
          "UsageFunction": 256, "KeysFunction": 256, "AdminFunction": 256}
# Lambda's price per GB-second (us-east-1, the first tier).
PRICE = {"x86_64": 0.0000166667, "arm64": 0.0000133334}


@pytest.fixture(autouse=True)
def _region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def memory_parameter(function: str) -> str:
    return function.removesuffix("Function") + "MemorySize"


# ---- The template ----

def test_architecture_is_a_parameter_arm64_by_default():
    parameter = document()["Parameters"]["Architecture"]
    assert (parameter["Type"], parameter["Default"]) == ("String", "arm64")
    assert sorted(parameter["AllowedValues"]) == sorted(ARCHITECTURES)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_function_and_layer_runs_on_the_architecture_chosen(architecture):
    resources = deployed({"Architecture": architecture})
    functions = of_type(resources, "AWS::Lambda::Function")
    assert len(functions) == len(FUNCTIONS)
    for name, function in functions.items():
        assert function["Properties"]["Architectures"] == [architecture], name
    layers = of_type(resources, "AWS::Lambda::LayerVersion")
    assert len(layers) == 2
    for name, layer in layers.items():
        assert layer["Properties"]["CompatibleArchitectures"] == [architecture], name


def test_the_functions_run_on_arm64_unless_told_otherwise():
    for name, function in of_type(deployed({}), "AWS::Lambda::Function").items():
        assert function["Properties"]["Architectures"] == ["arm64"], name


def test_the_dependencies_layer_is_built_by_the_makefile_of_the_architecture_chosen():
    metadata = document()["Resources"]["DependenciesLayer"]["Metadata"]
    assert metadata["BuildMethod"] == "makefile"
    # SAM's build cache is kept per BuildArchitecture: a build for one never serves the other.
    assert metadata["BuildArchitecture"] == {"Ref": "Architecture"}
    assert metadata["ContextPath"] == {"Fn::Sub": "layers/dependencies/${Architecture}"}
    for architecture in ARCHITECTURES:
        makefile = (ROOT / "layers" / "dependencies" / architecture / "Makefile").read_text()
        machine = {"arm64": "aarch64", "x86_64": "x86_64"}[architecture]
        assert re.search(rf"^MACHINE := {machine}$", makefile, re.MULTILINE), architecture
    common = document()["Resources"]["CommonLayer"]["Metadata"]
    assert common["BuildArchitecture"] == {"Ref": "Architecture"}


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_each_functions_memory_is_a_bounded_parameter(function):
    name = memory_parameter(function)
    assert document()["Resources"][function]["Properties"]["MemorySize"] == {"Ref": name}
    parameter = document()["Parameters"][name]
    assert (parameter["Type"], parameter["MinValue"], parameter["MaxValue"]) == ("Number", 128, 10240)
    assert parameter["Default"] == MEMORY[function]
    assert "MemorySize" not in document()["Globals"]["Function"]


def test_a_memory_parameter_sizes_its_function_alone():
    resources = deployed({"ChatMemorySize": "1024"})
    sizes = {name: str(resources[name]["Properties"]["MemorySize"]) for name in FUNCTIONS}
    assert sizes == {name: "1024" if name == "ChatFunction" else str(size) for name, size in MEMORY.items()}


def test_a_streamed_chat_costs_a_third_of_what_it_did_on_x86_64_at_512_mb():
    """The issue's target: the chat function's GB-seconds of a 20-second streamed chat, priced."""
    def cost(architecture: str, megabytes: int) -> float:
        return 20 * megabytes / 1024 * PRICE[architecture]

    parameters = document()["Parameters"]
    assert parameters["Architecture"]["Default"] == "arm64"
    assert cost("arm64", parameters["ChatMemorySize"]["Default"]) <= cost("x86_64", 512) / 3


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_no_environment_sets_the_architecture(environment):
    # make deploy ARCH=... chooses it, for the build and the deploy alike.
    assert "Architecture" not in overrides(environment)


# ---- The build ----

def elf_machine(path: Path) -> int | None:
    head = path.read_bytes()[:20]
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_compiled_module_of_the_dependencies_layer_is_for_its_architecture(architecture, tmp_path):
    build = tmp_path / "build"
    result = subprocess.run(
        [SAM, "build", "DependenciesLayer", "--build-dir", str(build), "--cache-dir", str(tmp_path / "cache"),
         "--parameter-overrides", f"Architecture={architecture}"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    layer = build / "DependenciesLayer" / "python"
    machines = {path.relative_to(layer).as_posix(): elf_machine(path) for path in layer.rglob("*.so*")
                if path.is_file()}
    compiled = {name: machine for name, machine in machines.items() if machine is not None}
    for package in ("pydantic_core", "cryptography", "tiktoken", "regex"):
        assert any(name.startswith(f"{package}/") for name in compiled), package
    assert {name: machine for name, machine in compiled.items() if machine != E_MACHINE[architecture]} == {}
    # Bytecode shipped: Lambda's /opt is read-only, so a cold start would compile every module.
    assert (layer / "pydantic" / "__pycache__").is_dir()
    assert not (layer / "bin").exists()


# ---- make ----

STAMPS = [".venv/bin/.installed", ".lambda-runtime/.installed", ".e2e/instructor/.installed", ".e2e/agents/.installed",
          ".checkov/.installed", "model-runtime"]


def make(*arguments: str) -> subprocess.CompletedProcess:
    """What `make` would run, printed and not run (prerequisites' installs left out)."""
    old = [option for stamp in STAMPS for option in ("-o", stamp)]
    return subprocess.run(["make", "--dry-run", "--no-print-directory", *old, *arguments], cwd=ROOT,
                          env={**os.environ, "ARCH": "", "OVERRIDES": ""}, capture_output=True, text=True, timeout=60)


def sam_builds(output: str) -> list[str]:
    return [line for line in output.splitlines() if "sam build" in line]


@pytest.mark.parametrize(("arguments", "expected"), [
    (("build",), ".venv/bin/sam build"),
    (("build", "ARCH=x86_64"), ".venv/bin/sam build --parameter-overrides Architecture=x86_64"),
    (("build", "ARCH=arm64"), ".venv/bin/sam build --parameter-overrides Architecture=arm64"),
])
def test_make_build_builds_the_templates_architecture_unless_arch_says(arguments, expected):
    done = make(*arguments)
    assert done.returncode == 0, done.stderr
    assert [line.strip() for line in sam_builds(done.stdout)] == [expected]


@pytest.mark.parametrize("target", ["test", "run-lambda", "bench"])
@pytest.mark.parametrize("given", ["", "ARCH=arm64", "ARCH=x86_64"])
def test_what_runs_the_build_here_builds_it_for_this_machine(target, given):
    done = make(target, *([given] if given else []))
    assert done.returncode == 0, done.stderr
    assert [line.strip() for line in sam_builds(done.stdout)] == [
        f".venv/bin/sam build --parameter-overrides Architecture={HOST}"]


def test_make_build_refuses_an_architecture_lambda_has_not():
    done = subprocess.run(["make", "--no-print-directory", "-o", ".venv/bin/.installed", "build", "ARCH=amd64"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "ARCH is arm64 or x86_64" in done.stdout + done.stderr


def test_a_deploy_deploys_the_architecture_it_built():
    default = make("deploy", "ENV=prod")
    assert default.returncode == 0, default.stderr
    assert [line.strip() for line in sam_builds(default.stdout)] == [".venv/bin/sam build"]
    assert "Architecture=" not in default.stdout  # the template's default, built and deployed
    chosen = make("deploy", "ENV=prod", "ARCH=x86_64", "OVERRIDES=OllamaUrl=http://10.0.1.20:11434")
    assert chosen.returncode == 0, chosen.stderr
    assert [line.strip() for line in sam_builds(chosen.stdout)] == [
        ".venv/bin/sam build --parameter-overrides Architecture=x86_64"]
    (release,) = [line for line in chosen.stdout.splitlines() if "devkit.release" in line]
    assert release.split()[-2:] == ["OllamaUrl=http://10.0.1.20:11434", "Architecture=x86_64"]


def test_a_deploy_takes_the_architecture_from_arch_not_from_overrides():
    done = make("deploy", "OVERRIDES=Architecture=x86_64")
    assert done.returncode != 0 and "ARCH=" in done.stderr
