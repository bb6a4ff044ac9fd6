# Shortcuts for the README's commands.
.PHONY: install demo summary test
install:
	python -m pip install -q -r requirements.txt
demo: install
	python -m experiments.demo
summary: install
	python -m mobilenet_jax.summary
test: install
	python -m pytest -q -n auto tests
