"""Each built image holds exactly what the image table says, no more: its Debian packages and its Python
distributions, listed inside the image, against references computed here without the build; and none of the
tools only its build stage needs.

- Debian: the packages added over the base are exactly the table's packages (images.apt_packages) and their
  Depends/Pre-Depends, followed through the image's own dpkg database (no recommends, nothing else).
- Python: the venv holds exactly the distributions the image's requirement files name and what those
  require (followed through the dev venv's metadata, which has the same pins), each at its pinned version,
  less the build-only ones (pip, wheel, Cython).
- Build tools: no compiler, no Python headers, no pip, no apt package lists or caches, found by looking.
- What never runs: no test suite of any package, no C/C++/Cython source or header, no source map in the
  venv; but every module's bytecode, since the root filesystem is read-only in production. That the
  images still import and serve is the container tests' (test_container_images.py: real predictions).
"""

from __future__ import annotations

import json
import re
from importlib import metadata

import pytest
from container_runner import podman
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy import images
from deploy.seed_table import REPO_ROOT

DPKG_FORMAT = r"${Package}\t${db:Status-Status}\t${Pre-Depends}, ${Depends}\t${Provides}\n"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)")


def dpkg_database(tag: str) -> dict[str, tuple[list[list[str]], list[str]]]:
    """Installed package -> (dependency groups, each a list of alternatives; provided virtual names)."""
    output = podman("run", "--rm", "--entrypoint", "dpkg-query", tag, "-W", "-f", DPKG_FORMAT).stdout
    packages = {}
    for line in output.splitlines():
        name, status, depends, provides = line.split("\t")
        if status != "installed":
            continue
        groups = [[alt.split()[0].split(":")[0] for alt in group.split("|") if alt.strip()]
                  for group in depends.split(",") if group.strip()]
        packages[name] = (groups, [p.split()[0] for p in provides.split(",") if p.strip()])
    return packages


def dependency_closure(roots: list[str], database: dict) -> set[str]:
    providers: dict[str, set[str]] = {}
    for name, (_, provides) in database.items():
        for virtual in provides:
            providers.setdefault(virtual, set()).add(name)
    closure: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        assert name in database, f"{name} is not installed"
        closure.add(name)
        for group in database[name][0]:
            for alternative in group:  # every installed alternative of a dependency is accounted for
                pending += [p for p in ({alternative} | providers.get(alternative, set())) if p in database]
    return closure


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO_ROOT / "requirements" / "constraints.txt").read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def top_requirements(spec: images.ImageSpec) -> list[Requirement]:
    found = []
    for path in [images.BOOTSTRAP_REQUIREMENTS, *images.install_order(spec.requirements)]:
        for line in (REPO_ROOT / path).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                found.append(Requirement(line))
    return found


def python_closure(requirements: list[Requirement]) -> set[str]:
    """Distribution names the requirements pull in, following each distribution's Requires-Dist."""
    closure: set[str] = set()
    pending = [(req, ()) for req in requirements]
    while pending:
        requirement, extras = pending.pop()
        environment = [{"extra": extra} for extra in extras] or [{"extra": ""}]
        if requirement.marker and not any(requirement.marker.evaluate(env) for env in environment):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, tuple(sorted(requirement.extras)))
        if key in closure:
            continue
        closure.add(key)
        for line in metadata.distribution(name).requires or []:
            pending.append((Requirement(line), tuple(sorted(requirement.extras))))
    return {name for name, _ in closure}


# The image has no pip: the distributions are read the way pip itself reads them, from their metadata.
LIST_DISTRIBUTIONS = ("import json, importlib.metadata as m; "
                      "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")


def installed_distributions(tag: str) -> dict[str, str]:
    output = podman("run", "--rm", "--entrypoint", images.VENV_PYTHON, tag, "-c", LIST_DISTRIBUTIONS).stdout
    return {canonicalize_name(name): version for name, version in json.loads(output).items()}


@pytest.fixture(scope="module")
def base_packages(built_images) -> set[str]:
    return set(dpkg_database(images.BASE_IMAGE))


@pytest.mark.slow
@pytest.mark.parametrize("spec", images.IMAGES, ids=lambda spec: spec.name)
def test_debian_packages_are_the_tables_and_their_dependencies(spec, built_images, base_packages):
    database = dpkg_database(images.local_tag(spec.name))
    table = images.apt_packages(spec)
    added = set(database) - base_packages
    assert set(table) <= set(database)
    assert added == dependency_closure(table, database) - base_packages


@pytest.mark.slow
@pytest.mark.parametrize("spec", images.IMAGES, ids=lambda spec: spec.name)
def test_python_distributions_are_the_requirements_and_their_dependencies(spec, built_images):
    installed = installed_distributions(images.local_tag(spec.name))
    build_only = {canonicalize_name(name) for name in images.BUILD_ONLY_DISTRIBUTIONS}
    expected = python_closure(top_requirements(spec)) - build_only
    assert set(installed) == expected
    pinned = pins()
    assert {name: version for name, version in installed.items() if pinned.get(name) != version} == {}
    assert not {"pytest", "ruff", "tox"} & set(installed)  # test tools stay out of production images


@pytest.mark.slow
@pytest.mark.parametrize("spec", images.IMAGES, ids=lambda spec: spec.name)
def test_compiled_distributions_are_there_and_their_compiler_is_not(spec, built_images):
    # wheels pip had to build here (no PyPI wheel for the pin) are compiled in the build stage only
    wheelhouse = REPO_ROOT / ".state" / "wheelhouse"
    built_here = {canonicalize_name(p.name.split("-")[0]) for p in wheelhouse.glob("*-linux_x86_64.whl")}
    assert built_here <= set(images.SOURCE_BUILT)
    installed = set(installed_distributions(images.local_tag(spec.name)))
    assert installed & set(images.SOURCE_BUILT) == set(spec.compiled)
    assert (set(images.COMPILER_APT) <= set(images.build_apt_packages(spec))) == bool(spec.compiled)


# What only a build uses, looked for inside the image: compilers and make on the PATH, Python's C headers,
# pip and friends importable by the venv, apt's package lists, archives and binary caches.
LOOK_FOR_BUILD_TOOLS = r"""
for tool in gcc g++ cc c++ cpp make ld as; do command -v "$tool"; done
ls -d /usr/include/python3* 2>/dev/null
ls -A /var/lib/apt/lists | grep -v '^lock$' | grep -v '^partial$' | sed 's|^|/var/lib/apt/lists/|'
ls /var/cache/apt/*.bin /var/cache/apt/archives/*.deb 2>/dev/null
for module in pip wheel Cython; do
    /opt/lib/venv/bin/python3 -c "import $module" 2>/dev/null && echo "python module $module"
done
ls /opt/lib/venv/bin | grep -E '^(pip|wheel|cython|cythonize)' | sed 's|^|/opt/lib/venv/bin/|'
true
"""


@pytest.mark.slow
@pytest.mark.parametrize("spec", images.IMAGES, ids=lambda spec: spec.name)
def test_no_build_tools_in_the_image(spec, built_images):
    found = podman("run", "--rm", "--entrypoint", "sh", images.local_tag(spec.name), "-c",
                   LOOK_FOR_BUILD_TOOLS).stdout.split()
    assert found == []


# What no production process reads, looked for in the venv: folders named `tests` (the packages' own test
# suites), C/C++/Cython sources and headers (only a compiler reads them), source maps (only a browser's
# developer tools).
LOOK_FOR_NEVER_RUN = r"""
find /opt/lib/venv \( -type d -name tests -print -prune \) -o \
    \( -type f \( -name '*.[ch]' -o -name '*.[ch]pp' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \
    -o -name '*.map' \) -print \)
"""


@pytest.mark.slow
@pytest.mark.parametrize("spec", images.IMAGES, ids=lambda spec: spec.name)
def test_no_test_suites_or_sources_in_the_venv(spec, built_images):
    found = podman("run", "--rm", "--entrypoint", "sh", images.local_tag(spec.name), "-c",
                   LOOK_FOR_NEVER_RUN).stdout.split()
    assert found == []


# Every module of the venv with its bytecode beside it, as Python itself names it (cache_from_source): the
# root filesystem is read-only in production, so a missing .pyc is compiled again on every start.
MODULES_WITHOUT_BYTECODE = """
import importlib.util, json, pathlib, sys
sources = list(pathlib.Path(sys.prefix, "lib").rglob("*.py"))
missing = [str(p) for p in sources if not pathlib.Path(importlib.util.cache_from_source(str(p))).is_file()]
print(json.dumps({"sources": len(sources), "missing": missing}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("spec", images.IMAGES, ids=lambda spec: spec.name)
def test_every_module_of_the_venv_keeps_its_bytecode(spec, built_images):
    output = podman("run", "--rm", "--entrypoint", images.VENV_PYTHON, images.local_tag(spec.name), "-c",
                    MODULES_WITHOUT_BYTECODE).stdout
    found = json.loads(output)
    assert found["sources"] > 1000  # kserve and its dependencies, at least
    assert found["missing"] == []


@pytest.mark.slow
def test_the_searches_find_what_they_look_for(built_images):
    """Each search itself, in the base image with the files it looks for planted: it must report them (so an
    empty answer above means none was there, not a broken search)."""
    planted = ("mkdir -p /usr/include/python3.11 && touch /usr/bin/gcc && chmod +x /usr/bin/gcc && "
               "mkdir -p /opt/lib/venv/lib/pkg/tests /opt/lib/venv/lib/pkg/testing && "
               "touch /opt/lib/venv/lib/pkg/a.pyx /opt/lib/venv/lib/pkg/b.h /opt/lib/venv/lib/pkg/c.js.map "
               "/opt/lib/venv/lib/pkg/tests/test_a.py /opt/lib/venv/lib/pkg/testing/d.py && ")
    result = podman("run", "--rm", "--entrypoint", "sh", images.BASE_IMAGE, "-c",
                    planted + LOOK_FOR_BUILD_TOOLS + LOOK_FOR_NEVER_RUN)
    found = set(result.stdout.split())
    venv = "/opt/lib/venv/lib/pkg"
    assert {"/usr/bin/gcc", "/usr/include/python3.11", f"{venv}/tests", f"{venv}/a.pyx", f"{venv}/b.h",
            f"{venv}/c.js.map"} <= found
    assert not {path for path in found if "testing" in path}  # numpy.testing is imported at run time
