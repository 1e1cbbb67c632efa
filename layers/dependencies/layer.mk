# The dependencies layer, built by `sam build` (BuildMethod: makefile) for the functions' architecture
# without a container: pip takes the wheels of Lambda's platform (MACHINE, set by the Makefile of the
# architecture that includes this file) from the package index, compiled packages included, and never
# builds one from source on this machine, whose compiler would make code for its own CPU.
# template.yaml points the layer's ContextPath at layers/dependencies/<Architecture>/, so the
# Architecture parameter chooses that Makefile, and SAM's build cache keeps each architecture apart.

# The Python that runs pip and compiles the bytecode: the runtime's version (Lambda's python3.12), as
# `sam build` requires for the functions too. The wheels chosen do not depend on it.
PYTHON ?= python3.12
HERE := $(dir $(lastword $(MAKEFILE_LIST)))
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): any manylinux wheel for glibc 2.17 to
# 2.34 runs there (manylinux2014 brings in the older manylinux2010 and manylinux1 with it).
PLATFORMS := manylinux2014_$(MACHINE) $(foreach minor,17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34,manylinux_2_$(minor)_$(MACHINE))
LAYER := $(ARTIFACTS_DIR)/python

# Then bytecode for every module, made once here: Lambda's /opt is read-only, so without it each cold
# start compiles every module it imports. Unchecked-hash: nothing in a published layer changes under it,
# and the files' times (which a zip keeps to 2 s, in local time) are not compared.
build-DependenciesLayer:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is unset: sam build runs this target"; exit 2; }
	@test -n "$(MACHINE)" || { echo "MACHINE is unset: build through layers/dependencies/<architecture>/Makefile"; exit 2; }
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile --target "$(LAYER)" \
		--implementation cp --python-version 3.12 --abi cp312 $(addprefix --platform ,$(PLATFORMS)) \
		--only-binary=:all: -r "$(HERE)requirements.txt"
	rm -rf "$(LAYER)/bin"
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(LAYER)"

.PHONY: build-DependenciesLayer
