"""Hostile and careless manifests (issue #14): alias bombs fail fast, duplicate keys are an error naming both
lines (never a silent drop, never an `--in-place` rewrite), numbers Kubernetes would refuse are refused."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ferryman.convert import blockyaml
from ferryman.convert.manifests import ManifestError, convert_stream, parse_stream
from ferryman.convert.options import ConvertOptions
from tests.convert.test_cli import job, run


def alias_bomb(size: int = 1200) -> str:
    """The "billion laughs" document: nine levels of nine aliases, padded to about `size` bytes."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    text = "\n".join(lines) + "\n"
    return "# " + "x" * max(size - len(text) - 3, 0) + "\n" + text


def test_an_alias_bomb_fails_fast_naming_the_line() -> None:
    bomb = alias_bomb()
    assert 1100 <= len(bomb) <= 1300
    started = time.perf_counter()
    with pytest.raises(ManifestError, match="alias bomb") as raised:
        convert_stream(f"{job()}---\n{bomb}", ConvertOptions())
    assert time.perf_counter() - started < 2
    assert raised.value.line is not None and raised.value.line > job().count("\n") + 1


def test_an_alias_bomb_inside_a_string_is_not_expanded() -> None:
    """Embedded manifests (a Katib trial template, an Argo step) are parsed with the same limits."""
    embedded = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  job.yaml: |\n" + "".join(
        f"    {line}\n" for line in ("kind: PyTorchJob", *alias_bomb().splitlines())
    )
    started = time.perf_counter()
    convert_stream(embedded, ConvertOptions())
    assert time.perf_counter() - started < 2


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(ManifestError, match="recursive"):
        parse_stream("spec: &s\n  again: *s\n")


def test_shared_aliases_within_the_limit_still_read() -> None:
    text = "base: &env [{name: A, value: '1'}]\nx: *env\ny: *env\n"
    (document,) = parse_stream(text)
    assert document.data["x"] == document.data["y"] == [{"name": "A", "value": "1"}]


CONCATENATED = job("first") + job("second")  # two manifests joined without `---`


def test_duplicate_keys_are_an_error_naming_both_lines() -> None:
    with pytest.raises(ManifestError) as raised:
        parse_stream(CONCATENATED)
    first_line = job().count("\n")
    assert raised.value.line == first_line + 2  # the second `apiVersion`
    assert "duplicate key 'apiVersion'" in raised.value.message
    assert "first given on line 2" in raised.value.message and "`---`" in raised.value.message


def test_duplicate_keys_are_left_to_pyyaml_by_the_block_reader() -> None:
    assert blockyaml.load("a: 1\nb:\n  c: 2\n  c: 3\n") is None
    assert blockyaml.load("- a: 1\n  a: 2\n") is None
    assert blockyaml.load("- a: 1\n- a: 2\n") is not None  # the same key in two items is no duplicate


def test_in_place_never_rewrites_a_file_with_duplicate_keys(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(CONCATENATED)
    result = run(path, "--in-place")
    assert result.exit_code == 2
    assert f"{path}:{job().count(chr(10)) + 2}" in result.stdout and "duplicate key" in result.stdout
    assert path.read_text() == CONCATENATED


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (job().replace("replicas: 2", "replicas: 1000000000000000000000000000000"), 10,
         "replicas: a 31-digit number is outside the 32-bit integer range"),
        (job().replace("replicas: 2", "replicas: 2147483648"), 10, "replicas: 2147483648 is outside"),
        (job() + "  runPolicy:\n    activeDeadlineSeconds: 9223372036854775808\n", 20, "64-bit"),
        # the same through PyYAML (a flow mapping is not the block reader's)
        ("spec: {replicas: 99999999999}\n", 1, "replicas: 99999999999 is outside"),
    ],
)
def test_numbers_kubernetes_would_refuse_are_refused(text: str, line: int, problem: str) -> None:
    with pytest.raises(ManifestError) as raised:
        convert_stream("kind: Namespace\n---\n" + text, ConvertOptions())
    assert raised.value.line == line + 2 and problem in raised.value.message


def test_numbers_in_range_convert() -> None:
    result = convert_stream(job().replace("replicas: 2", "replicas: 2147483647"), ConvertOptions())
    assert result.jobs
