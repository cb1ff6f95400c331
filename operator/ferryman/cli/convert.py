"""The file-system edge of `ferryman convert`: find manifest files, convert each, write results atomically."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ferryman.api.trainer import RuntimeRules
from ferryman.convert import runtime
from ferryman.convert.findings import Finding, Severity
from ferryman.convert.manifests import ManifestError, convert_stream
from ferryman.convert.options import ConvertOptions
from ferryman.convert.report import FileReport, render_json, render_text

MANIFEST_SUFFIXES = (".yaml", ".yml")
STDIN = "-"


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


@dataclass(frozen=True)
class Source:
    path: Path | None  # None for stdin
    display: str  # as shown in reports
    relative: Path  # where it goes under an output directory


def load_runtime_rules(path: Path) -> RuntimeRules:
    try:
        return runtime.load_runtime_rules(path)
    except OSError as error:
        raise UsageError(f"--runtime-rules {path}: {error.strerror}") from None
    except ValueError as error:
        raise UsageError(f"--runtime-rules {error}") from None


def collect_sources(paths: Iterable[str]) -> tuple[list[Source], list[FileReport]]:
    """The files to convert, in order; paths that do not exist become error reports."""
    paths = list(paths)
    existing = [Path(p) for p in paths if p != STDIN and Path(p).exists()]
    roots = [p.resolve() if p.is_dir() else p.resolve().parent for p in existing]
    base = Path(os.path.commonpath(roots)) if roots else Path.cwd()
    sources: list[Source] = []
    errors: list[FileReport] = []
    seen: set[Path] = set()

    def add(file: Path) -> None:
        resolved = file.resolve()
        if resolved not in seen:  # a file named twice, or also inside a named directory
            seen.add(resolved)
            sources.append(Source(file, str(file), resolved.relative_to(base)))

    for raw in paths:
        if raw == STDIN:
            sources.append(Source(None, "<stdin>", Path("stdin.yaml")))
            continue
        path = Path(raw)
        if path.is_dir():
            for file in manifest_files(path):
                add(file)
        elif path.is_file():
            add(path)
        else:
            errors.append(FileReport(file=raw, error="no such file or directory"))
    return sources, errors


def manifest_files(directory: Path) -> list[Path]:
    """The YAML files of a directory tree: those git tracks or would track when inside a work tree (so
    .gitignore is honoured), otherwise every one outside hidden directories."""
    listed = _git_files(directory)
    if listed is None:
        listed = []
        for root, dirs, names in os.walk(directory):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            listed.extend(Path(root) / name for name in names)
    # Symbolic links are skipped: rewriting one would replace the link, or a file outside the tree.
    return sorted(p for p in listed if p.suffix in MANIFEST_SUFFIXES and p.is_file() and not p.is_symlink())


def _git_files(directory: Path) -> list[Path] | None:
    try:
        done = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "."],
            cwd=directory,
            capture_output=True,
            check=False,
        )
    except OSError:  # no git
        return None
    if done.returncode != 0:  # not a work tree
        return None
    names = {name for name in done.stdout.decode("utf-8", "surrogateescape").split("\0") if name}
    return [directory / name for name in names]


def _read(source: Source, stdin: IO[str]) -> str:
    if source.path is None:
        return stdin.read()
    return source.path.read_bytes().decode("utf-8-sig")


def write_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """Write through a temporary file in the same directory and rename it over `path` (over the file a
    symbolic link points to, which stays a link). The file keeps its mode; a new one gets `mode` (the
    source's), or what the umask leaves of 0666 as any new file would."""
    path = path.resolve() if path.is_symlink() else path
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        mode = path.stat().st_mode & 0o7777
    elif mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector: converting a stream creates no reference cycles (refcounting frees
    everything), while the collector's repeated scans of the parsed documents cost a quarter of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_convert(
    paths: list[str],
    options: ConvertOptions,
    *,
    output: Path | None = None,
    in_place: bool = False,
    report_format: str = "text",
    strict: bool = False,
    template: bool | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Convert every manifest under `paths`. Returns the exit code: 0 ok, 1 blockers with strict, 2 errors."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if output is not None and in_place:
        raise UsageError("-o/--output and --in-place exclude each other")
    if in_place and STDIN in paths:
        raise UsageError("--in-place cannot rewrite standard input")
    sources, reports = collect_sources(paths)
    to_directory = output is not None and (
        output.is_dir() or len(paths) > 1 or any(Path(p).is_dir() for p in paths if p != STDIN)
    )
    streams: list[tuple[Source, str]] = []
    for source in sources:
        report = FileReport(file=source.display)
        reports.append(report)
        try:
            with cyclic_gc_paused():
                result = convert_stream(_read(source, stdin), options, template=template)
        except ManifestError as error:
            report.error, report.line, report.column = error.message, error.line, error.column
            continue
        except (OSError, UnicodeDecodeError) as error:
            report.error = f"cannot read: {error}"
            continue
        except Exception as error:  # a converter bug must not cost the other files their conversion
            report.error = f"internal error, please report it: {type(error).__name__}: {error}"
            continue
        report.jobs, report.template = result.jobs, result.template
        target: Path | None = None
        if in_place:
            target = source.path if result.changed else None
        elif output is not None:
            target = output / source.relative if to_directory else output
        else:
            streams.append((source, result.text))
        if target is not None:
            try:
                write_atomically(target, result.text, _mode(source))
            except OSError as error:
                report.error = f"cannot write {target}: {error.strerror or error}"
                report.jobs = []  # nothing of this file was converted where it was meant to be
                continue
            report.written = str(target)
    _flag_duplicate_names(reports)
    if streams:
        stdout.write(_concatenate(streams))
    rendered = render_json(reports) if report_format == "json" else render_text(reports)
    (stderr if output is None and not in_place else stdout).write(rendered)
    if any(r.error for r in reports):
        return 2
    if strict and any(job.blocked for r in reports for job in r.jobs):
        return 1
    return 0


def _mode(source: Source) -> int | None:
    """The permission bits of a source file (None for stdin)."""
    try:
        return source.path.stat().st_mode & 0o7777 if source.path is not None else None
    except OSError:
        return None


def _concatenate(streams: list[tuple[Source, str]]) -> str:
    if len(streams) == 1:
        return streams[0][1]
    parts = []
    for source, text in streams:
        body = (text if text.endswith("\n") or not text else text + "\n").removeprefix("---\n")
        parts.append(f"---\n# Source: {source.display}\n{body}")
    return "".join(parts)


def _flag_duplicate_names(reports: list[FileReport]) -> None:
    seen: dict[tuple[str | None, str], str] = {}
    for report in reports:
        for job in report.jobs:
            name = job.trainjob_name
            if name is None:
                continue
            key = (job.namespace, name)
            if key in seen:
                job.findings.append(
                    Finding(
                        severity=Severity.WARNING,
                        path=job.location + ".metadata.name" if job.location else "metadata.name",
                        message=f"TrainJob {name} is also emitted for {seen[key]}; one would replace the "
                        "other when applied: rename one of the jobs",
                        code="duplicate-trainjob-name",
                    )
                )
            else:
                seen[key] = f"{report.file} document {job.document}"
