# The two commands a fresh machine needs: `make demo` and `make test`.
# Both install what is missing first (scripts/setup.sh), then run.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup setup-kube demo test test-fast test-e2e bench proto clean

setup:
	@scripts/setup.sh

# The tests also run a real Kubernetes control plane: etcd, iptables, and the Go build of it.
setup-kube:
	@scripts/setup.sh --kube

demo: setup
	$(VENV)/bin/nodemesh demo

# The whole suite: unit, kernel integration and end-to-end tests.
test: setup-kube
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup-kube
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

test-e2e: setup-kube
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

# The benchmark (under 10 minutes): writes docs/benchmarks.md and its plots.
bench: setup
	$(VENV)/bin/nodemesh bench --out docs/benchmarks --report docs/benchmarks.md

# Regenerates the gRPC stubs from nodemesh/api/mesh.proto (they are committed).
proto: setup
	$(PY) -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. nodemesh/api/mesh.proto

clean:
	rm -rf $(VENV) build *.egg-info
