"""DuckDB readers' memory: ``make_engine(read_only=True)`` gives DuckDB a ``memory_limit``
(``CRM_DUCKDB_MEMORY_LIMIT``, default ``crm_data.dialects.DUCKDB_MEMORY_LIMIT``) and a
temporary folder of the process's own for what it spills; writers keep DuckDB's default."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from crm_data import dialects
from crm_data.engines import make_engine


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "small.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE numbers AS SELECT range AS n FROM range(2000000)")
    con.close()
    return path


def _settings(engine: sa.Engine) -> tuple[int, str]:
    """(memory_limit in bytes, temp_directory) of the engine's DuckDB instance."""
    with engine.connect() as c:
        limit, folder = c.exec_driver_sql(
            "SELECT (SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'), "
            "current_setting('temp_directory')"
        ).one()
    return _bytes(limit), folder


def _bytes(text: str) -> int:
    number, unit = text.split()
    return round(float(number) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit])


def test_a_reader_gets_the_limit_and_a_temporary_folder_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRM_DUCKDB_MEMORY_LIMIT", raising=False)
    monkeypatch.setenv("CRM_DUCKDB_TEMP_DIRECTORY", str(tmp_path / "spill"))
    engine = make_engine(f"duckdb:///{_file(tmp_path)}", read_only=True)
    limit, folder = _settings(engine)
    engine.dispose()
    assert abs(limit - 640 * 10**6) < 2**20  # DuckDB shows 640MB as 610.3 MiB
    assert folder == str(tmp_path / "spill" / f"crm-insights-duckdb-{os.getpid()}")


def test_the_setting_overrides_the_limit_and_default_keeps_duckdbs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(tmp_path)
    monkeypatch.setenv("CRM_DUCKDB_MEMORY_LIMIT", "512MB")
    engine = make_engine(f"duckdb:///{path}", read_only=True)
    assert abs(_settings(engine)[0] - 512 * 10**6) < 2**20  # DuckDB shows 512MB as 488.2 MiB
    engine.dispose()
    monkeypatch.setenv("CRM_DUCKDB_MEMORY_LIMIT", "default")
    engine = make_engine(f"duckdb:///{path}", read_only=True)
    assert _settings(engine)[0] > 10**9  # DuckDB's own: 80 % of the machine's memory
    engine.dispose()
    monkeypatch.setenv("CRM_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="CRM_DUCKDB_MEMORY_LIMIT"):
        make_engine(f"duckdb:///{path}", read_only=True)


def test_a_writer_keeps_duckdbs_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_DUCKDB_MEMORY_LIMIT", raising=False)
    engine = make_engine(f"duckdb:///{_file(tmp_path)}")
    assert _settings(engine)[0] > 10**9
    engine.dispose()


def test_a_reader_spills_and_opens_more_connections_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sort larger than the limit spills into the process's folder (which DuckDB deletes
    when the engine closes), and a new connection afterwards does not try to move the
    folder (DuckDB refuses that once it holds spilled blocks)."""
    monkeypatch.setenv("CRM_DUCKDB_MEMORY_LIMIT", "48MB")
    monkeypatch.setenv("CRM_DUCKDB_TEMP_DIRECTORY", str(tmp_path / "spill"))
    engine = make_engine(f"duckdb:///{_file(tmp_path)}", read_only=True)
    folder = Path(dialects.duckdb_temp_directory())
    with engine.connect() as first:
        result = first.exec_driver_sql("SELECT n, n::VARCHAR AS s FROM numbers ORDER BY hash(n)")
        assert len(result.fetchmany(3)) == 3
        assert folder.is_dir()
        with engine.connect() as second:  # a second pooled connection: its own connect event
            assert second.exec_driver_sql("SELECT count(*) FROM numbers").scalar() == 2_000_000
    engine.dispose()
    assert not folder.exists()


def test_the_threads_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(tmp_path)
    monkeypatch.setenv("CRM_DUCKDB_THREADS", "1")
    engine = make_engine(f"duckdb:///{path}", read_only=True)
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT current_setting('threads')").scalar() == 1
    engine.dispose()
    monkeypatch.setenv("CRM_DUCKDB_THREADS", "none")
    with pytest.raises(ValueError, match="CRM_DUCKDB_THREADS"):
        make_engine(f"duckdb:///{path}", read_only=True)
