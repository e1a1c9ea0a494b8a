"""Publishing patches the previous snapshot copy instead of copying the whole file, and never
writes a file a reader has open, in another process or in this one (`shared/warehouse/snapshot.py`).

The expected contents are the writer file itself, compared byte for byte (`filecmp`), and the
counts a reader sees are the rows this test inserted; neither comes from the code under test.
"""

from __future__ import annotations

import filecmp
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shared.refresh import refresh_features
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import open_warehouse, publish_snapshot, snapshot_path
from shared.warehouse.snapshot import spare_path
from tests.sql.landing import land_fleet

_READER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from shared.settings import Settings
    from shared.warehouse import open_warehouse

    flags = Path(sys.argv[1])
    sql = "SELECT COUNT(*) AS n FROM energy_analytics.pipeline_runs"
    with open_warehouse(Settings(), read_only=True) as wh:
        print(wh.query(sql).to_pylist()[0]["n"], flush=True)
        (flags / "open").touch()
        deadline = time.monotonic() + 120
        while not (flags / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        print(wh.query(sql).to_pylist()[0]["n"], flush=True)
    """
)


def _write_run(settings: Settings, run_id: str) -> None:
    """One small unit of work that publishes (a real writer's MERGE would do the same)."""
    with open_warehouse(settings) as wh:
        wh.execute(
            "INSERT INTO energy_analytics.pipeline_runs (run_id, handler, dedupe_key, status, started_at) "
            "VALUES (@run_id, 'test', @run_id, 'succeeded', CURRENT_TIMESTAMP)",
            {"run_id": run_id},
        )


def _runs(settings: Settings) -> int:
    with open_warehouse(settings, read_only=True) as wh:
        return int(wh.query("SELECT COUNT(*) AS n FROM energy_analytics.pipeline_runs").to_pylist()[0]["n"])


def _inode(path: Path) -> int:
    return path.stat().st_ino


def _published_like_the_writer(settings: Settings) -> bool:
    return filecmp.cmp(settings.duckdb_path, snapshot_path(settings), shallow=False)


@pytest.fixture
def warm(settings: Settings) -> Settings:
    """A home with a real warehouse (a landed fleet, refreshed, and 40 MB of history a small unit
    of work does not touch, as a fleet's months of readings), published twice so a spare exists."""
    land_fleet(settings)
    refresh_features(settings)
    with open_warehouse(settings) as wh:
        wh.execute(
            "CREATE TABLE energy_analytics.history AS "
            "SELECT i, md5(CAST(i AS VARCHAR)) AS s FROM UNNEST(GENERATE_ARRAY(1, 1000000)) AS i"
        )
    _write_run(settings, "warm-1")
    assert spare_path(snapshot_path(settings)).exists()
    return settings


def _blocks(data: bytes, size: int = 1 << 18) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_a_publish_patches_the_spare_writing_only_what_changed(
    warm: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    spare = spare_path(snapshot_path(warm))
    before, inode = spare.read_bytes(), _inode(spare)
    with caplog.at_level(logging.INFO, logger="shared.warehouse.snapshot"):
        _write_run(warm, "patched")
    assert _inode(snapshot_path(warm)) == inode  # the previous copy, brought up to date in place
    assert _published_like_the_writer(warm)
    assert _runs(warm) == 2
    # The 256 KiB blocks that differ between the spare as it was and the writer file, counted here.
    after = _blocks(warm.duckdb_path.read_bytes())
    old = _blocks(before)
    changed = [block for i, block in enumerate(after) if i >= len(old) or old[i] != block]
    assert len(changed) < len(after) / 10  # one row, not the file
    (record,) = [r for r in caplog.records if r.getMessage() == "warehouse snapshot published"]
    assert record.mode == "patched"  # type: ignore[attr-defined]
    assert record.written == sum(len(b) for b in changed)  # type: ignore[attr-defined]


def test_a_copy_another_process_has_open_is_never_written(warm: Settings, tmp_path: Path) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(flags)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (flags / "open").exists():
            assert reader.poll() is None, reader.communicate()
            assert time.monotonic() < deadline, "the reader never opened the snapshot"
            time.sleep(0.05)
        held = _inode(snapshot_path(warm))
        _write_run(warm, "while-reading-1")  # the held copy becomes the spare
        assert _inode(spare_path(snapshot_path(warm))) == held
        _write_run(warm, "while-reading-2")  # would patch it, but the reader has it open
        assert _inode(snapshot_path(warm)) != held
        assert _published_like_the_writer(warm)
        (flags / "go").touch()
        out, err = reader.communicate(timeout=120)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    assert out.split() == ["1", "1"]  # what it opened stayed what it was
    assert _runs(warm) == 3


def test_a_copy_a_reader_of_this_process_has_open_is_never_written(
    warm: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not even opened: closing any descriptor of a file drops the POSIX locks this process holds
    on it, DuckDB's read lock included, after which another process could patch it."""
    opened: list[str] = []
    real_open = os.open

    def recording_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    sql = "SELECT COUNT(*) AS n FROM energy_analytics.pipeline_runs"
    with open_warehouse(warm, read_only=True) as reader:
        held = _inode(snapshot_path(warm))
        monkeypatch.setattr(os, "open", recording_open)
        _write_run(warm, "in-process-1")
        _write_run(warm, "in-process-2")
        monkeypatch.undo()
        assert not [p for p in opened if Path(p).parent == snapshot_path(warm).parent]
        assert _inode(snapshot_path(warm)) != held
        assert reader.query(sql).to_pylist()[0]["n"] == 1
    assert _published_like_the_writer(warm)
    assert _runs(warm) == 3
    spare = _inode(spare_path(snapshot_path(warm)))
    _write_run(warm, "after-the-reader")  # with the reader gone, the spare is patched again
    assert _inode(snapshot_path(warm)) == spare


def test_a_torn_spare_from_a_killed_publisher_is_patched_whole(warm: Settings) -> None:
    spare = spare_path(snapshot_path(warm))
    size = spare.stat().st_size
    with spare.open("r+b") as torn:  # half a patch: garbage in the middle, the tail cut off
        torn.seek(size // 3)
        torn.write(os.urandom(1 << 16))
        torn.truncate(size // 2)
    _write_run(warm, "after-a-crash")
    assert _published_like_the_writer(warm)
    assert _runs(warm) == 2


def test_without_ofd_locks_every_publish_copies(warm: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shared.warehouse.snapshot._OFD_SETLK", None)  # e.g. macOS
    spare = _inode(spare_path(snapshot_path(warm)))
    _write_run(warm, "copied")
    assert _inode(snapshot_path(warm)) != spare
    assert _published_like_the_writer(warm)
    assert publish_snapshot(warm) is False  # already this state
