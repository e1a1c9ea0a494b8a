"""Install DuckDB's spatial extension for bqemulator from the duckdb-extension-spatial wheel.

bqemulator runs `INSTALL spatial; LOAD spatial` at start, which downloads from the DuckDB extension
site, unreachable here. Installing the wheel's file first makes that INSTALL a no-op. Run with the
.venv-bqemu interpreter (`make bqemu` does); idempotent.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import duckdb_extension_spatial


def main() -> None:
    package = Path(duckdb_extension_spatial.__file__).parent
    wanted = f"v{duckdb.__version__}"
    found = sorted(package.glob(f"extensions/{wanted}/spatial.duckdb_extension"))
    if not found:
        raise SystemExit(
            f"duckdb-extension-spatial has no {wanted} build: pin it to duckdb=={duckdb.__version__}"
        )
    con = duckdb.connect()
    con.execute(f"INSTALL '{found[0]}'")
    con.execute("LOAD spatial")
    print(f"spatial extension {wanted} installed from {found[0]}")


if __name__ == "__main__":
    main()
