"""Every non-GUI module of app/ is covered by the no-Qt import contract."""
import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_app_module_is_in_the_headless_contract():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = conf["tool"]["importlinter"]["contracts"][0]
    listed = set(contract["source_modules"])
    assert "app.ui" in contract["forbidden_modules"]
    modules = {f"app.{p.stem}" for p in (ROOT / "app").glob("*.py") if p.stem != "__init__"}
    missing = sorted(modules - listed)
    assert not missing, f"add these to the import contract in pyproject.toml: {missing}"
