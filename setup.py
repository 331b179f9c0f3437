"""Build hook only (all metadata is in pyproject.toml): ship the top-level ``redis.conf`` inside the wheel.

``redis.conf`` stays at the repository root, the one copy people edit and compose mounts. An installed
package cannot reach the root of the tree it was built from, so the build copies that file into the built
``common`` package, where ``common.redis.repo_redis_conf`` looks first. Nothing is duplicated in the tree:
the copy exists only in ``build/`` and in the wheel. MANIFEST.in puts the root file in the sdist, so a
wheel built from the sdist (``python -m build``, ``pip install triarb-*.tar.gz``) gets it the same way.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

REDIS_CONF = Path(__file__).resolve().parent / "redis.conf"
PACKAGED_AS = Path("common") / "redis.conf"
"""Where the copy goes, relative to the package root; ``common.redis.PACKAGED_REDIS_CONF`` names the same file."""


class BuildPyWithRedisConf(build_py):
    def run(self) -> None:
        super().run()
        # An editable install runs from the tree, where the lookup falls back to the root file itself.
        if not self.editable_mode:
            self.copy_file(str(REDIS_CONF), str(Path(self.build_lib) / PACKAGED_AS))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        extra = [] if self.editable_mode else [str(Path(self.build_lib) / PACKAGED_AS)]
        return [*super().get_outputs(include_bytecode), *extra]


setup(cmdclass={"build_py": BuildPyWithRedisConf})
