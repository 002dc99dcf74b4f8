import os
import time
from pathlib import Path

import pytest

from batchml.io.atomic import atomic_dir


def test_success_replaces_previous_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    with atomic_dir(str(out)) as tmp:
        (tmp_path / tmp.rsplit("/", 1)[-1] / "new").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_leaves_previous_output_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(str(out)) as tmp:
            (tmp_path / tmp.rsplit("/", 1)[-1] / "half").write_text("half-written")
            raise RuntimeError("killed")
    assert (out / "old").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_first_write_creates_parents(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with atomic_dir(str(out)) as tmp:
        assert tmp.endswith(tuple("0123456789abcdef"))
    assert out.is_dir()


def test_success_removes_stale_siblings_of_killed_runs_only(tmp_path):
    from batchml.io.atomic import STALE_AFTER_S

    out = tmp_path / "out"
    stale = tmp_path / ".out.tmp-deadbeef00"
    live = tmp_path / ".out.tmp-0123456789"        # a run still writing (recently touched)
    other = tmp_path / ".other.tmp-deadbeef00"      # another output's sibling
    for d in (stale, live, other):
        (d / "part").mkdir(parents=True)
    old = time.time() - STALE_AFTER_S - 60
    for d in (stale, other):
        os.utime(d, (old, old))
    with atomic_dir(str(out)):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out", live.name, other.name])


def test_an_existing_file_is_never_swapped_out(tmp_path):
    from batchml.errors import InputError
    target = tmp_path / "out"
    target.write_text("a user's file")
    with pytest.raises(InputError, match="existing file"):
        with atomic_dir(str(target)) as tmp:
            (Path(tmp) / "x").write_text("new")
    assert target.read_text() == "a user's file"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
