"""The distribution as a user gets it: the sdist, the wheel built from it, and `triarb up --demo` run from that
wheel installed in a fresh venv, in a directory that is not the checkout, through to opportunities on the page.

The sdist is built from a copy of the tree, never the checkout itself: a stale ``build/`` or ``*.egg-info``
there would put files in the archives that the packaging config no longer ships. The wheel is built from the
sdist, as ``python -m build`` and ``pip install triarb-*.tar.gz`` do, so both archives are checked at once.
The fresh venv gets its dependencies from this one (a ``.pth`` line to its site-packages, offline) and our
wheel through pip; nothing of the checkout is importable there.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed: run `make test` (it installs it with apt)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("triarb", "common", "schemas", "producers", "consumers", "dashboard")
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__",
                                    ".*_cache", ".hypothesis")
DASHBOARD_LINE = re.compile(r"dashboard: http://127\.0\.0\.1:(\d+)")
BANNER_TIMEOUT_S = 30
OPPORTUNITY_TIMEOUT_S = 60
"""The demo session plants its first mispricing 8 s in and replays in a loop; a minute is a wide margin."""


def runtime_files() -> list[str]:
    """What `triarb up --demo` reads besides code, relative to the package root (site-packages). The wheel's
    copy of redis.conf sits in `common/` (setup.py puts it there); the rest is read from the tree, so a page
    or session file added later is checked without editing this test."""
    static = [f"dashboard/static/{path.name}" for path in (REPO / "dashboard" / "static").iterdir() if path.is_file()]
    demo_dir = "producers/simulators/data/demo"
    demo = [f"{demo_dir}/{path.name}" for path in (REPO / demo_dir).glob("*.ndjson")]
    assert static and demo, "the checkout has no page or no demo session to ship"
    return sorted(["common/redis.conf", *static, *demo])


def clean_env() -> dict[str, str]:
    """The environment of a user's shell: no settings of ours, nothing that adds the checkout to sys.path."""
    dropped = ("REDIS_URL", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith("TRIARB_") and k not in dropped}


def run(command: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
        timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env or clean_env(), capture_output=True,
                            text=True, timeout=timeout_s)
    assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@dataclass(frozen=True)
class Distribution:
    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class Venv:
    root: Path
    site_packages: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Distribution:
    work = tmp_path_factory.mktemp("dist")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    # The sdist through the PEP 517 hook, with the build requirements pyproject.toml names (what `python -m
    # build --sdist` does; `build` itself is not a dependency of ours, and pip builds no sdists).
    backend = work / "backend"
    requires = tomllib.loads((source / "pyproject.toml").read_text())["build-system"]["requires"]
    run([sys.executable, "-m", "pip", "install", "--quiet", "--target", backend, *requires], cwd=work)
    hook = "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
    run([sys.executable, "-S", "-c", hook, work / "sdist"], cwd=source, env=clean_env() | {"PYTHONPATH": str(backend)})
    (sdist,) = (work / "sdist").glob("triarb-*.tar.gz")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", work / "wheel", sdist], cwd=work)
    (wheel,) = (work / "wheel").glob("triarb-*.whl")
    return Distribution(sdist, wheel)


@pytest.fixture(scope="module")
def venv(distribution: Distribution, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A new venv with our wheel installed by pip, and this venv's site-packages as a plain path for the
    dependencies. A path listed in a .pth file gets no .pth processing of its own, so the editable install's
    finder there never runs."""
    root = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", root], cwd=root)
    site_packages = Path(run([root / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             cwd=root).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "triarb_test_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    # pip (from this venv, via the .pth) run by the new venv's python installs into the new venv, with its
    # python in the `triarb` script; --ignore-installed because the editable triarb 0.1.0 is visible too.
    run([root / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed",
         distribution.wheel], cwd=root)
    return Venv(root, site_packages)


def test_sdist_carries_redis_conf_the_page_and_the_demo_session(distribution: Distribution) -> None:
    with tarfile.open(distribution.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        top = distribution.sdist.name.removesuffix(".tar.gz")
        member = archive.extractfile(f"{top}/redis.conf")
        assert member is not None
        assert member.read() == (REPO / "redis.conf").read_bytes()
    expected = ["redis.conf", *(path for path in runtime_files() if path != "common/redis.conf")]
    assert [path for path in expected if path not in names] == []


def test_wheel_carries_redis_conf_the_page_and_the_demo_session(distribution: Distribution) -> None:
    with zipfile.ZipFile(distribution.wheel) as archive:
        names = set(archive.namelist())
        assert [path for path in runtime_files() if path not in names] == []
        assert archive.read("common/redis.conf") == (REPO / "redis.conf").read_bytes()
        assert "redis.conf" not in names  # not at the top of site-packages, where any distribution could clash


def test_installed_package_is_imported_from_the_venv_and_finds_its_own_redis_conf(venv: Venv, tmp_path: Path) -> None:
    probe = ("import json, importlib; from common.redis import repo_redis_conf; "
             f"print(json.dumps({{n: importlib.import_module(n).__file__ for n in {PACKAGES!r}}} "
             "| {'redis.conf': str(repo_redis_conf())}))")
    found = json.loads(run([venv.python, "-c", probe], cwd=tmp_path).stdout)

    for name, path in found.items():
        assert Path(path).is_relative_to(venv.site_packages), f"{name} comes from {path}, not the installed wheel"
    assert Path(found["redis.conf"]) == venv.site_packages / "common" / "redis.conf"
    assert [path for path in runtime_files() if not (venv.site_packages / path).is_file()] == []


def read_dashboard_port(process: subprocess.Popen[str], stderr_file: Path) -> int:
    """The port from the banner's `dashboard:` line; fails with the log's tail if the stack dies or hangs."""
    assert process.stdout is not None
    printed: list[str] = []
    deadline = time.monotonic() + BANNER_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if not ready:
            continue
        line = process.stdout.readline()
        if not line:
            break  # exited
        printed.append(line)
        if match := DASHBOARD_LINE.search(line):
            return int(match[1])
    process.kill()
    pytest.fail(f"no dashboard line from `triarb up --demo`; stdout: {printed!r}\n"
                f"stderr tail:\n{''.join(stderr_file.read_text().splitlines(True)[-20:])}")


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


@pytest.fixture
def demo(venv: Venv, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`triarb up --demo` from the installed venv in an empty directory, as a user would start it."""
    env = clean_env() | {"TRIARB_VAR_DIR": str(tmp_path / "var"), "TRIARB_EMBEDDED_PORT": "0",
                         "TRIARB_SERVICE_PORT": "0", "TRIARB_DASHBOARD_PORT": "0"}
    stderr_file = tmp_path / "stderr.log"
    with stderr_file.open("w") as stderr:
        process = subprocess.Popen([str(venv.root / "bin" / "triarb"), "up", "--demo"], cwd=tmp_path, env=env,
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        yield process, stderr_file
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_demo_from_the_installed_wheel_reaches_opportunities_and_stops_cleanly(
    demo: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    process, stderr_file = demo
    base = f"http://127.0.0.1:{read_dashboard_port(process, stderr_file)}"

    assert get(f"{base}/")[0] == 200
    assert get(f"{base}/static/app.js")[0] == 200
    opportunities: list[object] = []
    deadline = time.monotonic() + OPPORTUNITY_TIMEOUT_S
    while not opportunities and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        opportunities = json.loads(get(f"{base}/api/opportunities")[1])
    assert opportunities, (f"no opportunity within {OPPORTUNITY_TIMEOUT_S}s (exit status {process.poll()});\n"
                           f"{stderr_file.read_text()[-3000:]}")

    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 0, stderr_file.read_text()[-3000:]
    assert not (tmp_path / "var" / "redis.json").exists()  # the embedded redis-server was stopped
