# The README's two quickstart commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := runs/demo
# The bundled digits (UCI optdigits) at 40% symmetric noise: the MLP memorises the noise without a MentorNet.
STUDENT := --dataset digits --studentnet mlp --noise 0.4 --epochs 100

# Fashion-MNIST for benchmarks/gpu_acceptance.py: Debian's idx files (dataset-fashion-mnist), copied into the
# ignored data/ folder so that they travel with the working tree to a GPU machine. Files already there are kept.
FASHION_MNIST_SOURCE ?= /usr/share/datasets/fashion-mnist
FASHION_MNIST_FILES := train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
	t10k-labels-idx1-ubyte.gz

.PHONY: setup demo test data clean

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

data: $(addprefix data/fashion-mnist/,$(FASHION_MNIST_FILES))

data/fashion-mnist/%.gz:
	@mkdir -p $(@D)
	@test -f $(FASHION_MNIST_SOURCE)/$*.gz || { echo "Error: $(FASHION_MNIST_SOURCE)/$*.gz not found: install \
	Debian's dataset-fashion-mnist, or set FASHION_MNIST_SOURCE to a folder holding the idx .gz files" >&2; exit 1; }
	cp $(FASHION_MNIST_SOURCE)/$*.gz $@

clean:
	rm -rf $(VENV) runs .pytest_cache
