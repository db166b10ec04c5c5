# The README's two quickstart commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := runs/demo
# The bundled digits (UCI optdigits) at 40% symmetric noise: the MLP memorises the noise without a MentorNet.
STUDENT := --dataset digits --studentnet mlp --noise 0.4 --epochs 100

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
	$(PY) cli.py train-student $(STUDENT) --mentornet none --out $(DEMO)/baseline --force
	$(PY) cli.py train-student $(STUDENT) --mentornet $(DEMO)/mentornet_pd.pt --out $(DEMO)/mentornet_pd --force

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
