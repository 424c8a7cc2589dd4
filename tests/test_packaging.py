"""Packaging and documentation stay true: dependency lists agree, the README's commands are the ones CI
and the Makefile run, and the README's model zoo table is what `esg zoo` prints."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest
import yaml

from conftest import PROJECT_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_asks_for_the_same_packages_as_pyproject() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    # the conda environment holds everything: the library's dependencies and every extra (test, lab)
    wanted = {_name(r) for r in pyproject["dependencies"]} | {_name(r) for extra in
                                                                pyproject["optional-dependencies"].values()
                                                                for r in extra}
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert conda_python == ["python=3.11"]
    assert {_name(r) for r in pip_section if not r.startswith("-e")} == wanted


def test_lock_file_pins_every_direct_dependency_exactly() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    lock = {}
    for line in (PROJECT_ROOT / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"lock line not pinned: {line}"
            lock[_name(name)] = version
    torch_pins = [line for line in (PROJECT_ROOT / "requirements-torch.txt").read_text().splitlines()
                  if line and not line.startswith("#")]
    assert {_name(r) for r in torch_pins} == {"torch", "torchvision"} and all("==" in r for r in torch_pins)
    missing = {_name(r) for r in pyproject["dependencies"]} - set(lock) - {"torch", "torchvision"}
    assert missing == set()


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make reproduce", "make test"]
    assert readme.index("```bash") < 1500  # first screen
    ci = [line.strip() for line in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[-1] == "make test" and "make install" in ci
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert re.search(r"^reproduce: install$", makefile, re.M) and re.search(r"^test: install$", makefile, re.M)


def test_readme_model_zoo_is_what_esg_zoo_prints() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = re.search(r"<!-- zoo:begin.*?-->\n(.*?)<!-- zoo:end -->", readme, re.S).group(1).strip()
    printed = subprocess.run([sys.executable, "-m", "esg_lib", "zoo"], capture_output=True, text=True, check=True)
    assert printed.stdout.split("\n\n")[0].strip() == table


def test_console_script_and_module_entry_point_agree() -> None:
    out = subprocess.run([sys.executable, "-m", "esg_lib", "--help"], capture_output=True, text=True, check=True)
    assert "zoo" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "esg_lib", "zoo", "--models", "no_such_model"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown model(s): no_such_model" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_git_ignores_what_must_never_be_committed() -> None:
    """NEU-CLS-64 (no license) and the figures showing its pictures, checkpoints and run folders stay out of git."""
    if not (PROJECT_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    must_ignore = ["data/fetched/neu-cls-64/crazing/cr_1.bmp", "figures/cpu/data_samples_neu-cls-64.png",
                   "figures/paper/data_samples_neu-cls-64.pdf", "figures/cpu/fig13_gradcam_neu-cls-64.png",
                   "runs/cpu/x-sdd/resnet18/s0-x/best.pt",
                   "weights.safetensors"]
    must_keep = ["figures/cpu/data_samples_x-sdd.png", "figures/cpu/data_counts_neu-cls-64.png",
                 "figures/cpu/fig13_gradcam_x-sdd.png", "figures/cpu/fig12_tsne_neu-cls-64.png",
                 "results/cpu/leak_audit_neu-cls-64.md"]
    checked = subprocess.run(["git", "check-ignore", "--no-index", *must_ignore, *must_keep], cwd=PROJECT_ROOT,
                             capture_output=True, text=True)
    assert checked.stdout.split() == must_ignore


def test_the_units_make_test_hands_out_first_name_tests_that_exist() -> None:
    """tests/conftest.py names the expensive tests and modules that xdist hands out first or on their
    own (docs/development.md): a renamed test or module must not drop out of that list unnoticed."""
    import conftest

    for test, unit in conftest.SEPARATE.items():
        path, name = test.split("::")
        assert re.search(rf"^def {name}\(", (PROJECT_ROOT / path).read_text(), re.M), test
        assert conftest._unit(f"{test}[param]") == unit
    for unit in conftest.FIRST:
        assert unit in conftest.SEPARATE.values() or (PROJECT_ROOT / unit).is_file(), unit
    assert conftest._unit("tests/test_faults.py::test_x") == "tests/test_faults.py"
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "-n $(PYTEST_WORKERS) --dist loadgroup" in makefile and re.search(r"^PYTEST_WORKERS \?= 2$", makefile, re.M)
