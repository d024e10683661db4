"""The committed gRPC stubs are what `make proto` generates from mesh.proto today."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stubs_match_the_proto(tmp_path: Path) -> None:
    (tmp_path / "nodemesh" / "api").mkdir(parents=True)
    shutil.copy(ROOT / "nodemesh/api/mesh.proto", tmp_path / "nodemesh/api/mesh.proto")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--grpc_python_out=.",
         "--pyi_out=.", "nodemesh/api/mesh.proto"],
        cwd=tmp_path, check=True)
    for name in ("mesh_pb2.py", "mesh_pb2.pyi", "mesh_pb2_grpc.py"):
        fresh = (tmp_path / "nodemesh/api" / name).read_text()
        assert fresh == (ROOT / "nodemesh/api" / name).read_text(), f"{name} is stale: run `make proto`"


def test_every_package_folder_is_declared_in_pyproject() -> None:
    """A subpackage missing from pyproject.toml works in the editable install and breaks in a wheel."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    roots = {path: pkg for pkg, path in config["package-dir"].items()}
    found = set()
    for folder, pkg in roots.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([pkg, *rel.parts]))
    assert found == declared
