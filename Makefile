# One-command set-up, tests and demo. `make test` and `make demo` run `setup` first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU machines get the CPU torch build (a bare `torch` pulls a multi-GB CUDA build).
TORCH_CPU ?= torch==2.13.0

.PHONY: setup test test-fast demo lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA found: installing torch from pyproject's range"; \
	else \
		$(BIN)/python -m pip install -q "$(TORCH_CPU)"; \
	fi
	@$(BIN)/python -m pip install -q -e ".[dev,s3]"
	@# face-alignment (and mediapipe) pull in their own GUI OpenCV; keep exactly one, headless, <5.
	@for gui in opencv-python opencv-contrib-python; do \
		if $(BIN)/python -m pip show -q $$gui >/dev/null 2>&1; then \
			$(BIN)/python -m pip uninstall -q -y $$gui; \
			$(BIN)/python -m pip install -q --force-reinstall --no-deps "opencv-python-headless>=4.8,<5"; \
		fi; \
	done
	@touch $(STAMP)
	@echo "setup done: $(VENV)"

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-fast: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests

demo: setup
	$(BIN)/python -m bench.demo --out demo_out

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) demo_out
