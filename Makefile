# The README's two quickstart commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := runs/demo

.PHONY: setup demo test clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	mkdir -p $(DEMO)
	$(PY) cli.py learn-curriculum --curriculum mentornet_pd --balance strata --steps 6000 \
		--out $(DEMO)/mentornet_pd.pt --force
	$(PY) cli.py plot --mentornet $(DEMO)/mentornet_pd.pt --compare --kind heatmap \
		--out $(DEMO)/mentornet_pd_compare.png --force
	$(PY) cli.py list

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
