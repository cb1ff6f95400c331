"""Neptune exports (`neptune-export:PATH`): the `neptune-exporter` parquet layout, read and written.

Layout (neptune-exporter's `ParquetWriter`): `PATH/data/<project>/<run>_part_<n>.parquet` holds "one long
table" per run (one row per parameter value or series point, typed value columns), and `PATH/files/<project>/`
holds the downloaded files that `file_value.path` names relative to it. `<project>` and `<run>` are the ids
made path-safe with a short blake2b suffix. A run is complete once its `part_0` exists (parts are renamed into
place highest first). PATH may also be the data directory itself (files then in its sibling `files/`).

Mapping: project → experiment, run → run, parameter attributes (float, int, string, bool, datetime,
string_set) → params, `sys/*` attributes → run fields (name, owner, times, state, tags, description, fork
parent; other `sys/*` become tags), float series → metrics (decimal steps made integral, per-point
timestamps), files, file series, file sets and string/histogram series → artifacts.

The writer produces the same layout, so an export can be re-created and read back. Until `finish_run`, each
write lands in a journal file (`<run>.journal-<n>.parquet`, invisible to Neptune tools) written through a temp
file and a rename; `finish_run` compacts the journals into `_part_<n>` files, `part_0` last. Run ids are
derived from the source identity, so a re-run finds its runs again and writes nothing twice.
"""
