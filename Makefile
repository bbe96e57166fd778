# Two commands matter on a fresh clone: `make demo` and `make test`.
# Everything else is for operators and contributors; see README.md.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Terraform tooling lives in its own venv: checkov and the schema-only stub
# provider need versions that clash with the function's pins.
TF_VENV  := .venv-tf
TF_STAMP := $(TF_VENV)/.installed
# checkov offline: no policy download, no guideline mapping, no version check.
CHECKOV  := CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE $(TF_VENV)/bin/checkov

.PHONY: install tf-tools fmt lint tf-lint test demo bench package deploy clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

$(TF_STAMP): requirements-tf.txt
	$(PYTHON) -m venv $(TF_VENV)
	$(TF_VENV)/bin/pip install --quiet --upgrade pip
	$(TF_VENV)/bin/pip install --quiet -r requirements-tf.txt
	touch $(TF_STAMP)

tf-tools: $(TF_STAMP)

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	-command -v terraform >/dev/null && terraform fmt -recursive terraform

lint: install tf-lint
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy watchdog main.py tools

tf-lint: install tf-tools
	@if command -v terraform >/dev/null; then terraform fmt -check -recursive terraform; \
	else echo "terraform not found: terraform fmt -check skipped"; fi
	$(BIN)/python tools/tf_validate.py terraform terraform/examples/basic
	$(CHECKOV) --directory terraform --framework terraform --skip-download --quiet --compact

test: install lint
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python -m watchdog demo

bench: install
	$(BIN)/python -m bench

# The function's source zip, exactly what Terraform uploads.
package: install
	$(BIN)/python tools/package.py

deploy: package
	$(BIN)/python tools/deploy_guard.py terraform
	terraform -chdir=terraform init -input=false
	terraform -chdir=terraform apply

clean:
	rm -rf $(VENV) $(TF_VENV) build dist .pytest_cache .mypy_cache .ruff_cache
