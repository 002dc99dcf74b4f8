"""Import a job module from jobs/ by name (jobs/ is not a package)."""
import importlib.util
from pathlib import Path

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def load_job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", JOBS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
