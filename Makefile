# TwinPlan: `make run` opens the app on the demo case, `make test` runs the suite.
PY := .venv/bin/python
DEMO := /usr/share/doc/invesalius-examples/examples/Cranium.inv3

.PHONY: setup run test bench lint demo clean package docs-images

setup:
	@bash packaging/setup.sh

run: setup
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		.venv/bin/twinplan-gui $(DEMO); \
	else \
		echo "No display found: running the demo pipeline headless into out/demo instead."; \
		.venv/bin/twinplan demo --out out/demo; \
	fi

lint: setup
	@.venv/bin/ruff check -q app imaging mechanics viewer tests benchmarks
	@.venv/bin/lint-imports

test: setup lint
	@xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest

docs-images: setup  # rewrite the user guide's screenshots in docs/images (then review and commit them)
	@TWINPLAN_UPDATE_DOCS=1 xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest tests/ui/test_docs_screenshots.py

bench: setup
	@$(PY) -m benchmarks

package: setup
	@bash packaging/build_deb.sh

demo: setup
	@.venv/bin/twinplan demo --out out/demo

clean:
	rm -rf out .pytest_cache
