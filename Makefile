# hypertune: two commands on a fresh machine.
#   make run   set everything up, then run notebooks 01-04 with papermill in the quick profile (234 s here);
#              PROFILE=full for the whole study (about 1 hour here), PROFILE=deep for notebooks 05 and 06.
#              Outputs go to runs/<profile>/ (ignored): the committed notebooks/ and figures/ stay as they are.
#   make test  set everything up, then lint, unit tests and the notebooks under nbval (smoke profile)
#   make test-fast  lint and the unit tests not marked slow (the edit loop, under 2 minutes)
#   make reference  maintainers only: refresh the committed notebooks/ and figures/ (REF=full or REF=deep)
# Set-up is idempotent: a second call does no work (stamps in .stamps/).
# TORCH=cpu (on a fresh clone): torch and torchvision from PyTorch's CPU-only index, without the CUDA libraries.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
PROFILE ?= quick
REF ?= full
TORCH ?= default
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PORT ?= 5000
HOST ?= 127.0.0.1
LAB_PORT ?= 8888
STORE := sqlite:///$(CURDIR)/mlruns/mlflow.db
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# apt waits (up to 10 min) for a lock another install holds, e.g. `make test` and `make run` set up side by side
APT := apt-get -o DPkg::Lock::Timeout=600

.PHONY: run reference results test test-fast setup data ui server class-server test-server lab handout bench bench-numerics \
	bench-dropout-numerics gpu-check clean lint lock lock-upgrade

setup: $(STAMPS)/venv $(STAMPS)/data

# Installs the locked versions (constraints.txt); `make lock` rewrites the lock from a venv that passed.
$(STAMPS)/venv: requirements.txt constraints.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@if [ "$(TORCH)" = cpu ]; then $(PY) -m pip install -q --index-url $(TORCH_CPU_INDEX) \
	   "$$(grep '^torch==' constraints.txt)" "$$(grep '^torchvision==' constraints.txt)"; fi
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name hypertune --display-name "Python (hypertune)" >/dev/null
	@mkdir -p $(STAMPS) && touch $@

# Fashion-MNIST: data/ first, then Debian's dataset-fashion-mnist (installed here when we are root
# with apt), then torchvision's downloader. Every file is checked against a recorded SHA-256.
$(STAMPS)/data: $(STAMPS)/venv
	@if [ ! -f data/FashionMNIST/raw/train-images-idx3-ubyte ] && [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
	   && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	   ($(APT) install -y -qq dataset-fashion-mnist || ($(APT) update -qq && $(APT) install -y -qq dataset-fashion-mnist)); fi
	$(PY) -m lib data
	@touch $@

# Browser tests: Debian's Chromium (apt, only when we are root and it is missing) and Playwright in the
# venv. Without a browser the browser tests skip with a message; the rest of `make test` runs as usual.
$(STAMPS)/browser: requirements-browser.txt $(STAMPS)/venv
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	   (DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq chromium \
	    || ($(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq chromium)) \
	   || echo "chromium could not be installed: the browser tests will be skipped"; fi
	$(PY) -m pip install -q -r requirements-browser.txt || echo "playwright could not be installed: the browser tests will be skipped"
	@touch $@

# Ray Tune (optional for users, see requirements-ray.txt); the tests cover the Ray back-end with it.
$(STAMPS)/ray: requirements-ray.txt $(STAMPS)/venv
	$(PY) -m pip install -q -r requirements-ray.txt
	@touch $@

# PostgreSQL for the class server (Debian's, installed here when we are root with apt and it is missing).
$(STAMPS)/postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null \
	   && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	   ($(APT) install -y -qq postgresql || ($(APT) update -qq && $(APT) install -y -qq postgresql)); fi
	@mkdir -p $(STAMPS) && touch $@

# The lock (README, "Updating the lock"): `make lock-upgrade` installs the newest versions the lower bounds
# allow into .venv; run `make test`; if it passes, `make lock` writes them to constraints.txt; commit both.
lock-upgrade: $(STAMPS)/venv
	$(PY) -m pip install -q --upgrade -r requirements.txt

lock: $(STAMPS)/venv
	@{ sed -n '/^#/p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^hypertune=='; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt
	@echo "constraints.txt: $$(grep -vc '^#' constraints.txt) packages locked from $(VENV)"

data: $(STAMPS)/venv
	@rm -f $(STAMPS)/data
	@$(MAKE) --no-print-directory $(STAMPS)/data

# Every profile writes to runs/<profile>/ (ignored); it prints where, and the time left after each cell.
run: setup
	$(PY) -m lib study --profile $(PROFILE)

# Maintainers: refresh the committed reference in place (REF=full: notebooks 01-04; REF=deep: 05, 06;
# REF=quick: 00_by_hand), then docs/results.md from its template and the new CSVs.
reference: setup
	$(PY) -m lib study --profile $(REF) --reference $(if $(filter quick,$(REF)),--notebooks 00_by_hand,)
	$(PY) -m lib.study.results_doc

# docs/results.md from docs/results-template.md and figures/*.csv (the tables are never typed by hand).
results: $(STAMPS)/venv
	$(PY) -m lib.study.results_doc

# The student edition: handout/ and handout.zip (README, library, the hand-outs of assignment/*.ipynb with every
# cell tagged `solution` a TODO stub, set-up; no solutions, outputs or results). docs/teaching.md.
handout: setup
	$(PY) -m lib.handout --out handout

lint: $(STAMPS)/venv
	$(PY) -m ruff check lib tests benchmarks

# Everything in three streams from the start, so the waits of the servers and kernels overlap the unit tests'
# CPU (measured 2026-12-07 beside other work: see docs/maintainers.md#the-tests):
# - in the background, the class server's tests (PostgreSQL, MLflow with logins, a two-node Ray cluster), then
#   the Ray back-end's tests (tests/test_ray.py): the two Ray clusters must not share a process (Ray's driver
#   state) nor run at the same time (tried: three Ray back-end tests failed when the two ran side by side);
# - in the background, every notebook once under nbval in the smoke profile against a temporary MLflow store,
#   figure folder and sweep state (the repository stays clean); the notebooks use neither Ray nor the server;
# - in the foreground, the other unit tests in two pytest-xdist processes, one file per process at a time, the
#   longest files first (tests/conftest.py).
# The background streams' output is shown when all three have ended. OpenMP threads wait passively here
# (OMP_WAIT_POLICY, also set by tests/conftest.py): trainings side by side otherwise spin away each other's time.
test: export OMP_WAIT_POLICY = PASSIVE
test: setup $(STAMPS)/ray $(STAMPS)/browser $(STAMPS)/postgres lint
	@tmp=$$(mktemp -d); streams=; \
	trap 'for group in $$streams; do kill -INT -- -$$group 2>/dev/null; done; wait; rm -rf "$$tmp"' EXIT; \
	setsid bash -c 'trap "exit 130" INT; \
	  $(PY) -m pytest -p no:cacheprovider --durations=10 tests/test_class_server.py >"$$0/server.log" 2>&1; \
	  echo $$? >"$$0/server.rc"; \
	  $(PY) -m pytest -p no:cacheprovider --durations=10 tests/test_ray.py >"$$0/ray.log" 2>&1; \
	  echo $$? >"$$0/ray.rc"' "$$tmp" & streams="$$!"; \
	HYPERTUNE_PROFILE=smoke MLFLOW_TRACKING_URI="sqlite:///$$tmp/mlflow.db" HYPERTUNE_FIGURES_DIR="$$tmp/figures" \
	HYPERTUNE_STATE_DIR="$$tmp/state" setsid $(PY) -m pytest -p no:cacheprovider --durations=10 --nbval-lax \
	  --nbval-kernel-name hypertune --nbval-cell-timeout 300 \
	  --ignore=notebooks/00_by_hand.ipynb notebooks/ >"$$tmp/notebooks.log" 2>&1 & \
	notebooks=$$!; streams="$$streams $$notebooks"; \
	$(PY) -m pytest -p no:cacheprovider -n 2 --dist loadfile --durations=20 tests \
	  --ignore=tests/test_class_server.py --ignore=tests/test_ray.py; unit=$$?; \
	wait $$notebooks; nbval=$$?; wait; streams=; \
	echo "--- tests/test_class_server.py (ran beside the unit tests)"; cat "$$tmp/server.log"; \
	echo "--- tests/test_ray.py (after the class server, beside the unit tests)"; cat "$$tmp/ray.log" 2>/dev/null; \
	echo "--- notebooks/ under nbval, smoke profile (beside the unit tests)"; cat "$$tmp/notebooks.log"; \
	test $$unit = 0 && test $$nbval = 0 && test "$$(cat "$$tmp/server.rc")" = 0 && test "$$(cat "$$tmp/ray.rc")" = 0

# The edit loop (under 2 minutes): ruff, then the unit tests not marked `slow` (tests/conftest.py).
# It leaves out what starts a process or trains beyond a second: the CLI run as a process, kill and
# concurrency tests, worker pools, Jupyter kernels, Ray, the browser, the class server, and the
# notebooks under nbval. `make test` runs everything before a commit is pushed.
test-fast: export OMP_WAIT_POLICY = PASSIVE
test-fast: setup lint
	$(PY) -m pytest -p no:cacheprovider -q --durations=5 -m "not slow" tests

# MLflow in its own process group (setsid), stopped as a group on Ctrl-C or exit: a SIGTERM to the
# main process alone leaves its huey job consumers behind.
define group_run
	@setsid $(1) & pid=$$!; \
	trap 'kill -TERM -- -'$$pid' 2>/dev/null; sleep 1; kill -KILL -- -'$$pid' 2>/dev/null; exit 0' INT TERM EXIT; \
	wait $$pid
endef

# MLflow UI on the project store, loopback only; Ctrl-C stops it. First it prints, per experiment, a link
# that opens the runs table in model-training mode with the varied hyperparameters and val_accuracy as columns.
ui: setup
	@MLFLOW_TRACKING_URI=$(STORE) $(PY) -m lib links --base http://127.0.0.1:$(PORT) || true
	$(call group_run,$(PY) -m mlflow ui --backend-store-uri $(STORE) --default-artifact-root $(CURDIR)/mlruns/artifacts \
	  --host 127.0.0.1 --port $(PORT) --workers 1)

# Shared tracking server on the project store (HOST=127.0.0.1 unless told otherwise, PORT=5000).
# Artifacts are served through it from mlruns/artifacts. Workers elsewhere log to it with
# MLFLOW_TRACKING_URI=http://HOST:PORT; Ctrl-C stops the server and all its processes.
server: setup
	@mkdir -p mlruns/artifacts
	@echo "MLflow tracking server on http://$(HOST):$(PORT) (store $(STORE)); Ctrl-C stops it"
	$(call group_run,$(PY) -m mlflow server --backend-store-uri $(STORE) \
	  --artifacts-destination $(CURDIR)/mlruns/artifacts --host $(HOST) --port $(PORT) --workers 1)

# A tracking server for a whole class (docs/class-server.md): PostgreSQL under mlruns/class-server
# (or DATABASE_URL), MLflow with logins for an admin and the students of ROSTER (default roster.txt),
# HOST=127.0.0.1 unless told otherwise, PORT=5000. Ctrl-C stops everything it started.
class-server: setup $(STAMPS)/postgres
	$(PY) -m lib.class_server --host $(HOST) --port $(PORT) $(if $(ROSTER),--roster $(ROSTER),)

# Only the class server's tests (make test runs them too): logins, load, restart, two-node Ray.
test-server: setup $(STAMPS)/ray $(STAMPS)/postgres
	$(PY) -m pytest -p no:cacheprovider -v tests/test_class_server.py

# JupyterLab (loopback) with the project's kernel on your own copy of the notebooks, runs/lab/notebooks/
# (made once; your edits and outputs stay there, the committed notebooks/ stay clean; figures and docs are
# linked beside it so the notebooks' links work). Runs log to the same fixed store.
lab: setup
	@mkdir -p runs/lab/notebooks && cp -n notebooks/*.ipynb runs/lab/notebooks/
	@ln -sfn ../../figures runs/lab/figures && ln -sfn ../../docs runs/lab/docs
	@echo "JupyterLab on runs/lab/notebooks/ (your copy; the committed notebooks/ stay as they are)"
	$(VENV)/bin/jupyter lab --notebook-dir=runs/lab/notebooks --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser \
	  $(if $(filter 0,$(shell id -u)),--allow-root,)

# The speed table of docs/performance.md in both precisions (about 8 minutes), the controlled accuracy
# comparison that decides whether bf16 may be the default (about 25 minutes on 2 idle cores; writes
# benchmarks/results/precision_numerics.md), the one that admitted FastDropout (about 15 minutes;
# benchmarks/results/dropout_numerics.md), and the GPU check for a machine with a CUDA GPU.
bench: setup
	$(PY) benchmarks/speed.py

bench-numerics: setup
	$(PY) benchmarks/precision_numerics.py --seeds 4

bench-dropout-numerics: setup
	$(PY) benchmarks/dropout_numerics.py --seeds 4

gpu-check: setup
	bash benchmarks/gpu_check.sh

clean:
	rm -rf $(STAMPS) .pytest_cache .ruff_cache lib/__pycache__ tests/__pycache__ benchmarks/__pycache__ *.egg-info
	@echo "kept: .venv, data/, mlruns/ (delete them by hand to start from scratch)"
