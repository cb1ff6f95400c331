"""Manifest streams: find the v1 jobs in a YAML or JSON stream, convert them, and write the stream back.

Pure: text in, text and records out. What is recognised as a job (a kind and version of the table in
``convert/registry.py``):

* a document of the stream, or an item of a ``kind: List`` (``kubectl get -o yaml``), live dumps included;
* a job object nested anywhere in another object: AppWrapper ``spec.components[].template`` and the
  older ``spec.resources.GenericItems[].generictemplate``, Katib ``spec.trialTemplate.trialSpec``, custom
  wrappers;
* a YAML string holding one, such as an Argo Workflow ``resource.manifest`` (templates, DAG and steps alike).

Each converted job is replaced where it stands, by splicing the new text into the source: comments, key
order, quoting and every other document stay byte for byte. A derived TrainingRuntime (``emit_runtime``)
goes in a document of its own just before the document that uses it. A blocked job is left unchanged.

envsubst templates: a stream is a template when a job in it carries a ``$VAR`` or ``${VAR}``
placeholder outside container ``command``, ``args`` and env values (where ``$VAR`` is ordinary shell or
Kubernetes syntax), unless the caller decides. In template mode placeholders may stand in numeric fields
(``replicas: $NUM_NODES`` becomes ``numNodes: $NUM_NODES``), and placeholders in string fields are written
double-quoted so that they remain strings once substituted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from ferryman.api.numbers import integer_problem
from ferryman.convert import blockyaml, emit
from ferryman.convert.emit import Placeholder
from ferryman.convert.findings import Finding, Severity
from ferryman.convert.options import Conversion, ConvertOptions
from ferryman.convert.placeholders import contains_placeholder, is_placeholder
from ferryman.convert.registry import JOB_KINDS, convert_job, job_kind

_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it
_Scalar, _Mapping, _Sequence = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode


class _Loader(_BaseLoader):
    """The safe loader, resolving a plain scalar's tag in one lookup: libyaml calls `resolve` for every
    scalar, and PyYAML's generic version (made for path resolvers, unused here) costs as much as parsing."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is _Scalar:
            return blockyaml.plain_tag(value) if implicit[0] else _STR_TAG
        return _SEQ_TAG if kind is _Sequence else _MAP_TAG


# Go template actions (Helm charts) as opposed to {{...}} placeholders Argo or Katib fill in
_GO_TEMPLATE = re.compile(r"\{\{-?\s*(?:\.|\$|include\b|template\b|if\b|range\b|with\b|define\b|end\b|/\*)")
_KIND_NAMES = tuple(row.kind.kind for row in JOB_KINDS.values())
# Keys whose values a template may hold as a bare placeholder standing for a number.
_NUMERIC_KEYS = frozenset(
    {"numNodes", "numProcPerNode", "activeDeadlineSeconds", "terminationGracePeriodSeconds", "replicas"}
)
# Where `$VAR` is shell or Kubernetes `$(VAR)` syntax rather than an envsubst placeholder.
_SHELL_KEYS = frozenset({"command", "args", "value"})
_PathKey = str | int
# `kubectl wait tfjob/x`, `kubectl get pytorchjobs`, `mpijobs.kubeflow.org/x`: a v1 job of a kind in the table
_JOB_REFERENCE = re.compile(
    rf"\b(?:{'|'.join(kind.lower() for kind in _KIND_NAMES)})s?(?:\.kubeflow\.org)?[/ ]", re.IGNORECASE
)


# A job in a YAML string that does not parse (unquoted Argo/Katib {{...}} parameters): its kind and version
_EMBEDDED_JOB = re.compile(
    rf"^\s*apiVersion:\s*[\"']?(?P<api_version>kubeflow\.org/\w+)[\"']?\s*$(?:.*\n)*?"
    rf"^\s*kind:\s*[\"']?(?P<kind>{'|'.join(_KIND_NAMES)})[\"']?\s*$",
    re.MULTILINE,
)


# Nodes a document may expand to through its aliases: a 1.2 KB "billion laughs" document expands to 10**9.
MAX_EXPANDED_NODES = 1_000_000


class _Refused(yaml.YAMLError):
    """A document PyYAML reads but ferryman refuses: a duplicate key, an alias bomb or a recursive alias, a
    number Kubernetes would refuse."""

    def __init__(self, problem: str, mark: Any, first_mark: Any = None) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark, self.first_mark = problem, mark, first_mark


class ManifestError(ValueError):
    """The stream is not valid YAML/JSON; `line` and `column` are 1-based when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        column = f", column {self.column}" if self.column is not None else ""
        where = f"line {self.line}{column}: " if self.line is not None else ""
        return f"{where}{self.message}"


@dataclass
class JobResult:
    """One v1 job found in the stream and what became of it."""

    document: int  # index of the document in the stream (0-based)
    location: str  # field path of the job inside its document, "" when the document is the job
    wrapper: str | None  # kind of the enclosing object, None for a top-level job
    kind: str  # of the source job (PyTorchJob, TFJob, ...)
    api_version: str | None  # of the source job, as written
    name: str | None
    namespace: str | None
    conversion: Conversion | None  # None when the job was not converted at all (unsupported apiVersion)
    findings: list[Finding] = field(default_factory=list)  # paths relative to the document

    @property
    def trainjob_name(self) -> str | None:
        if self.conversion is None or self.conversion.trainjob is None:
            return None
        name = self.conversion.trainjob.get("metadata", {}).get("name")
        return name if isinstance(name, str) else None

    @property
    def status(self) -> str:
        """converted | forced (emitted despite blockers) | blocked | unsupported."""
        if self.conversion is None:
            return "unsupported"
        if self.conversion.trainjob is None:
            return "blocked"
        return "forced" if self.conversion.blocked else "converted"

    @property
    def blocked(self) -> bool:
        return any(f.severity is Severity.BLOCKER for f in self.findings)


@dataclass
class StreamResult:
    text: str  # the converted stream; the input unchanged when nothing was converted
    jobs: list[JobResult]
    template: bool  # converted in template mode

    @property
    def changed(self) -> bool:
        return any(job.status in ("converted", "forced") for job in self.jobs)


@dataclass
class _Document:
    index: int
    data: Any
    source: str  # the text positions refer to: the document's own part of the stream, or the whole stream
    offset: int  # where `source` starts in the stream
    span: tuple[int, int]  # where the document's content starts and ends in `source`
    composed: yaml.Node | None = None  # the node tree, kept when PyYAML parsed a document a job may sit in

    @property
    def node(self) -> yaml.Node:
        """The node tree, needed only to splice a job nested in the document (composed on demand from a
        document's own part of the stream)."""
        if self.composed is None:
            self.composed = _compose(self.source)
        return self.composed


@dataclass
class _Found:
    document: _Document
    path: list[_PathKey]
    obj: dict[str, Any]
    in_string: bool  # the job is a YAML string (Argo `resource.manifest`) at `path`
    wrapper: str | None
    unreadable: str | None = None  # why a string naming a job (``obj`` holds its kind) is not YAML
    fixups: list[tuple[list[_PathKey], Any]] = field(default_factory=list)  # wrapper fields to rewrite


@dataclass
class _Edit:
    start: int
    end: int
    text: str


def convert_stream(text: str, options: ConvertOptions, template: bool | None = None) -> StreamResult:
    """Convert every v1 job in a YAML/JSON stream. `template`: None detects envsubst templates.

    Documents are converted one at a time and only their new text is kept, so a long stream (a cluster's
    `kubectl get -o yaml`) never holds more than one parsed document, unless it must be looked at as a whole
    first: to detect a template, or because it is JSON (written back whole)."""
    documents: Iterable[_Document] = iter_documents(text)
    json_input = text.lstrip()[:1] in ("{", "[")
    claims_in_stream = "PersistentVolumeClaim" in text
    if json_input or claims_in_stream or (template is None and "$" in text):
        documents = list(documents)
    if claims_in_stream:  # a Master-only volume may mount one of them
        options = replace(options, claims={**options.claims, **_claims(documents)})
    if template is None:
        template = isinstance(documents, list) and any(
            _has_placeholder(job.obj) for document in documents for job in _find_jobs(document)
        )
    options = replace(options, template=template)
    results: list[JobResult] = []
    edits: list[_Edit] = []
    runtimes: set[tuple[str | None, str]] = set()  # derived runtimes written so far: each once per stream
    for document in documents:
        converted: list[tuple[_Found, Conversion]] = []
        for job in _find_jobs(document):
            result = _convert_one(job, options)
            results.append(result)
            if result.conversion is not None and result.conversion.trainjob is not None:
                converted.append((job, result.conversion))
        if not converted:
            continue
        if json_input and isinstance(documents, list) and len(documents) == 1:
            return StreamResult(
                _rewrite_json(document, converted, _json_indent(text), runtimes), results, template
            )
        edits.extend(_document_edits(document, converted, template, runtimes))
    if not edits:
        return StreamResult(text=text, jobs=results, template=template)
    if "\r\n" in text:  # keep Windows line ends
        edits = [_Edit(e.start, e.end, e.text.replace("\r\n", "\n").replace("\n", "\r\n")) for e in edits]
    return StreamResult(text=_apply(text, edits), jobs=results, template=template)


def _claims(documents: Iterable[_Document]) -> dict[tuple[str | None, str], tuple[str, ...]]:
    """(namespace, name) -> access modes of the PersistentVolumeClaims among the documents."""
    found: dict[tuple[str | None, str], tuple[str, ...]] = {}
    for document in documents:
        data = document.data
        items = data.get("items") if isinstance(data, dict) and data.get("kind") == "List" else [data]
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("kind") == "PersistentVolumeClaim":
                metadata, spec = item.get("metadata"), item.get("spec")
                if isinstance(metadata, dict) and isinstance(spec, dict) and metadata.get("name"):
                    modes = spec.get("accessModes")
                    key = (metadata.get("namespace"), str(metadata["name"]))
                    found[key] = tuple(map(str, modes)) if isinstance(modes, list) else ()
    return found


def parse_stream(text: str) -> list[_Document]:
    """The non-empty documents of a stream, with their node trees where a job may be embedded."""
    return list(iter_documents(text))


def iter_documents(text: str) -> Iterator[_Document]:
    """The non-empty documents of a stream, one at a time. Each document in the block style manifests are
    written in is read by `blockyaml`; any other is parsed by PyYAML, on its own or with the whole stream
    when the stream itself needs it (directives, `...` markers)."""
    pieces = blockyaml.split_stream(text)
    if pieces is None:
        yield from _composed_documents(text)
        return
    for index, (start, end) in enumerate(pieces):
        piece = text[start:end]
        try:
            loaded = blockyaml.load(piece)
        except blockyaml.NumberOutOfRange as error:
            raise ManifestError(error.problem, text.count("\n", 0, start) + error.line + 1) from None
        if loaded is None:
            yield from _composed_documents(piece, index, start, text.count("\n", 0, start))
        else:
            data, content_start, content_end = loaded
            yield _Document(index, data, piece, start, (content_start, content_end))


def _composed_documents(
    source: str, index: int = 0, offset: int = 0, first_line: int = 0
) -> Iterator[_Document]:
    """The documents of `source` (at `offset` in the stream, starting on its line `first_line`) parsed by
    PyYAML; errors name lines of the stream."""
    loader = _Loader(source)
    try:
        while loader.check_node():
            node = loader.get_node()
            _check_expansion(node)
            data = _construct(loader, node, {})
            loader.constructed_objects, loader.recursive_objects = {}, {}
            if data is not None:
                # Node trees are large; keep one only where a job may sit inside the document.
                kept = None if isinstance(data, dict) and _is_job(data) else node
                yield _Document(index, data, source, offset, _content_span(source, node), kept)
            index += 1
    except yaml.YAMLError as error:
        raise _manifest_error(error, source, first_line) from None
    finally:
        loader.dispose()


def load_document(text: str) -> Any:
    """One YAML document parsed with the limits above (each refusal a `yaml.YAMLError` naming its line)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return _construct(loader, node, {})
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it beyond `MAX_EXPANDED_NODES` nodes, or into itself, before
    anything walks it (each shared node is sized once, so this costs one pass over the distinct nodes)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # nodes being sized: the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_sized = stack.pop()
        key = id(node)
        if node.__class__ is _Scalar:
            sizes[key] = 1
            continue
        children = [n for pair in node.value for n in pair] if node.__class__ is _Mapping else node.value
        if children_sized:
            total = 1 + sum(sizes[id(child)] for child in children)
            if total > MAX_EXPANDED_NODES:
                raise _Refused(
                    f"aliases expand this node to more than {MAX_EXPANDED_NODES:,} nodes (an alias bomb?); "
                    "not read",
                    node.start_mark,
                )
            sizes[key] = total
            open_.discard(key)
            continue
        if key in sizes:
            continue
        open_.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_:
                raise _Refused(
                    "an alias refers to a node containing it (a recursive document); not read",
                    child.start_mark,
                )
            if id(child) not in sizes:
                stack.append((child, False))


def _compose(source: str) -> yaml.Node:
    loader = _Loader(source)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    assert node is not None  # `source` held a document when it was read
    return node


def _construct(loader: Any, node: yaml.Node, memo: dict[int, Any]) -> Any:
    """PyYAML's safe construction, with the common cases (plain maps, sequences, strings) done directly:
    PyYAML's generic constructor costs more than parsing. Everything else goes to the loader itself."""
    cls = node.__class__
    if cls is _Scalar:
        return node.value if node.tag == _STR_TAG else loader.construct_object(node, deep=True)
    known = memo.get(id(node))
    if known is not None:
        return known
    if cls is _Mapping and node.tag == _MAP_TAG:
        mapping: dict[Any, Any] = {}
        memo[id(node)] = mapping
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                break  # merge keys: PyYAML's own flattening
            key = (
                key_node.value
                if key_node.__class__ is _Scalar and key_node.tag == _STR_TAG
                else (_construct(loader, key_node, memo))
            )
            value = (
                value_node.value
                if value_node.__class__ is _Scalar and value_node.tag == _STR_TAG
                else (_construct(loader, value_node, memo))
            )
            try:
                if key in mapping:
                    raise _duplicate(node, key_node)
                mapping[key] = value
            except TypeError:
                problem = ("while constructing a mapping", node.start_mark, "found unhashable key")
                raise yaml.constructor.ConstructorError(*problem, key_node.start_mark) from None
            if value.__class__ is int and (problem_ := integer_problem(key, value)) is not None:
                raise _Refused(problem_, value_node.start_mark)
        else:
            return mapping
    elif cls is _Sequence and node.tag == _SEQ_TAG:
        sequence: list[Any] = []
        memo[id(node)] = sequence
        for item in node.value:
            sequence.append(
                item.value
                if item.__class__ is _Scalar and item.tag == _STR_TAG
                else _construct(loader, item, memo)
            )
        return sequence
    value = loader.construct_object(node, deep=True)  # merge keys, sets, omaps, custom tags
    memo[id(node)] = value
    return value


def _duplicate(mapping: yaml.Node, key_node: yaml.Node) -> _Refused:
    """A key given twice in a mapping, naming both lines."""
    first = next(k for k, _ in mapping.value if type(k) is type(key_node) and k.value == key_node.value)
    return _Refused(
        f"duplicate key {key_node.value!r}: the later value would silently replace the earlier one (two "
        "manifests joined without a `---` line?)",
        key_node.start_mark,
        first.start_mark,
    )


def _manifest_error(error: yaml.YAMLError, text: str, first_line: int = 0) -> ManifestError:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if isinstance(error, _Refused):
        mark, message = error.problem_mark, error.problem
        if error.first_mark is not None:
            message += f"; first given on line {error.first_mark.line + first_line + 1}"
        return ManifestError(message, mark.line + first_line + 1, mark.column + 1)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    message = f"not valid YAML: {context + ', ' if context else ''}{problem}"
    if _GO_TEMPLATE.search(text):
        message += " (a Helm/Go template? render it first, e.g. with `helm template`, and convert the output)"
    elif "{{" in text:
        message += ' (a {{...}} placeholder where YAML expects a value? quote it: "{{...}}")'
    if mark is None:
        return ManifestError(message)
    return ManifestError(message, mark.line + first_line + 1, mark.column + 1)


# -- finding the jobs -----------------------------------------------------------------------------------


def _is_job(obj: dict[str, Any]) -> bool:
    """Whether an object is a job of a kind in the converter table (in any version)."""
    return job_kind(obj) is not None


def _find_jobs(document: _Document) -> Iterator[_Found]:
    data = document.data
    if isinstance(data, dict) and _is_job(data):
        yield _Found(document, [], data, False, None)
        return
    wrapper = data.get("kind") if isinstance(data, dict) else None
    yield from _walk(document, data, [], str(wrapper) if wrapper else None)


def _walk(document: _Document, value: Any, path: list[_PathKey], wrapper: str | None) -> Iterator[_Found]:
    items: Any
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        if isinstance(child, dict):
            if _is_job(child):
                yield _Found(document, [*path, key], child, False, wrapper)
            else:
                yield from _walk(document, child, [*path, key], wrapper)
        elif isinstance(child, list):
            yield from _walk(document, child, [*path, key], wrapper)
        elif isinstance(child, str) and "\n" in child and any(k in child for k in _KIND_NAMES):
            try:
                embedded = load_document(child)
            except yaml.YAMLError as error:
                named = _EMBEDDED_JOB.search(child)
                if named is not None:  # a job the reader cannot see into: reported, never silently kept
                    stub = {"apiVersion": named["api_version"], "kind": named["kind"]}
                    reason = " ".join(str(error).split())
                    yield _Found(document, [*path, key], stub, True, wrapper, unreadable=reason)
                continue
            if isinstance(embedded, dict) and _is_job(embedded):
                yield _Found(document, [*path, key], embedded, True, wrapper)


def _has_placeholder(value: Any, key: _PathKey | None = None) -> bool:
    if isinstance(value, str):
        return key not in _SHELL_KEYS and contains_placeholder(value)
    if isinstance(value, dict):
        return any(_has_placeholder(v, k) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_placeholder(v, key) for v in value)
    return False


def format_path(path: list[_PathKey]) -> str:
    """`["spec", "components", 0, "template"]` -> `spec.components[0].template`."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


# -- converting -----------------------------------------------------------------------------------------


def _convert_one(job: _Found, options: ConvertOptions) -> JobResult:
    location = format_path(job.path)
    metadata = job.obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name = metadata.get("name") or metadata.get("generateName")
    namespace = metadata.get("namespace")
    if namespace is None and job.wrapper is not None and isinstance(job.document.data, dict):
        wrapper_meta = job.document.data.get("metadata")
        namespace = wrapper_meta.get("namespace") if isinstance(wrapper_meta, dict) else None
    result = JobResult(
        document=job.document.index,
        location=location,
        wrapper=job.wrapper,
        kind=str(job.obj.get("kind")),
        api_version=str(job.obj["apiVersion"]) if job.obj.get("apiVersion") is not None else None,
        name=str(name) if name is not None else None,
        namespace=str(namespace) if namespace is not None else None,
        conversion=None,
    )
    if job.unreadable is not None:
        finding = Finding(
            severity=Severity.BLOCKER,
            path=location,
            code="embedded-not-yaml",
            message=f"this {result.kind} is not valid YAML ({job.unreadable}), so it cannot be converted and "
            "is left unchanged; quote values such as {{...}} template parameters, or convert it by hand",
        )
        result.conversion = Conversion(result.name or "", result.namespace, None, findings=[finding])
        result.findings.append(finding)
        return result
    kind = job_kind(job.obj)
    assert kind is not None  # _find_jobs found it by the table
    if job.obj.get("apiVersion") not in kind.api_versions:
        result.findings.append(
            Finding(
                severity=Severity.BLOCKER,
                path=_join(location, "apiVersion"),
                message=f"apiVersion {job.obj.get('apiVersion')} is not {' or '.join(kind.api_versions)}, "
                f"the {kind.kind.kind} versions ferryman reads; upgrade the job to that API first",
                code="unsupported-api-version",
            )
        )
        return result
    provisional = _provisional_name(job) if name is None else None
    source = job.obj if provisional is None else {**job.obj, "metadata": {**metadata, "name": provisional}}
    conversion = convert_job(source, options)
    result.conversion = conversion
    result.findings.extend(
        f.model_copy(update={"path": _join(location, f.path)}) for f in conversion.findings
    )
    if provisional is not None and conversion.trainjob is not None:
        _unname(conversion.trainjob)
        result.findings.append(
            Finding(
                severity=Severity.INFO,
                path=_join(location, "metadata.name"),
                message=f"the job has no name of its own ({job.wrapper} names it), so the TrainJob has none "
                "either; values derived from the name (a derived runtime, MASTER_ADDR with --launcher env) "
                f"use {provisional!r}",
                code="name-from-wrapper",
            )
        )
    runtime = conversion.runtime
    if runtime is not None and namespace is not None and "namespace" not in runtime["metadata"]:
        # a job in a wrapper is created in the wrapper's namespace, and so must its runtime be
        metadata = runtime["metadata"]
        runtime["metadata"] = {"name": metadata["name"], "namespace": str(namespace), **metadata}
    if conversion.trainjob is not None:
        result.findings.extend(_wrapper_findings(job))
    return result


def _provisional_name(job: _Found) -> str | None:
    """For a nameless job inside a wrapper (a Katib trial spec, say): the wrapper's name stands in."""
    if job.wrapper in (None, "List") or not isinstance(job.document.data, dict):
        return None
    wrapper_meta = job.document.data.get("metadata")
    wrapper_meta = wrapper_meta if isinstance(wrapper_meta, dict) else {}
    wrapper_name = wrapper_meta.get("name") or str(wrapper_meta.get("generateName") or "").rstrip("-")
    return str(wrapper_name) if wrapper_name else "job"


def _unname(trainjob: dict[str, Any]) -> None:
    metadata = trainjob.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("name", None)
        if not metadata:
            del trainjob["metadata"]


def _join(location: str, path: str) -> str:
    if not location:
        return path
    if not path:
        return location
    return f"{location}{path}" if path.startswith("[") else f"{location}.{path}"


def _wrapper_findings(job: _Found) -> list[Finding]:
    """What the enclosing object says about the job that no longer holds once it is a TrainJob."""
    data = job.document.data
    if job.wrapper is None or not isinstance(data, dict):
        return []
    findings: list[Finding] = []
    if job.wrapper == "AppWrapper" and len(job.path) >= 2:
        component = _get(data, job.path[:-1])
        for key in ("podSets", "custompodresources"):
            if isinstance(component, dict) and component.get(key):
                findings.append(
                    Finding(
                        severity=Severity.WARNING,
                        path=format_path([*job.path[:-1], key]),
                        message=f"the AppWrapper component's {key} describe the {job.obj.get('kind')}'s "
                        "pods; rewrite them for the TrainJob's JobSet (one replicated job `node`, numNodes "
                        "pods)",
                        code="appwrapper-podsets",
                    )
                )
    if job.wrapper == "Experiment" and job.path[-1:] == ["trialSpec"]:
        findings.extend(_katib_review(job, job.path[:-1]))
    if job.in_string and job.path[-2:] == ["resource", "manifest"]:
        resource = _get(data, job.path[:-1])
        for key in ("successCondition", "failureCondition"):
            if isinstance(resource, dict) and resource.get(key):
                findings.append(
                    Finding(
                        severity=Severity.WARNING,
                        path=format_path([*job.path[:-1], key]),
                        message=f"the Argo {key} tests the {job.obj.get('kind')}'s status; a TrainJob "
                        "reports conditions Complete and Failed and per-job counts in status.jobsStatus: "
                        "rewrite it",
                        code="argo-resource-condition",
                    )
                )
    if job.wrapper == "List":
        return findings
    references = [
        p for p, s in _strings(data, []) if p[: len(job.path)] != job.path and _JOB_REFERENCE.search(s)
    ]
    if references:
        findings.append(
            Finding(
                severity=Severity.WARNING,
                path=format_path(references[0]),
                message=f"{len(references)} other field(s) of this {job.wrapper} refer to v1 jobs "
                "(status checks, kubectl commands); point them at the TrainJob (conditions Complete/Failed)",
                code="wrapper-references-v1-job",
            )
        )
    return findings


_KATIB_MASTER_LABELS = {"training.kubeflow.org/job-role": "master"}
_KATIB_NODE0_LABELS = {"batch.kubernetes.io/job-completion-index": "0"}  # TrainJob node 0, the v1 master


def _katib_review(job: _Found, trial_path: list[_PathKey]) -> list[Finding]:
    """Point a Katib trial template at the TrainJob: its container, success condition and master pod."""
    trial = _get(job.document.data, trial_path)
    if not isinstance(trial, dict):
        return []
    changes: list[tuple[str, Any, str]] = []
    row = job_kind(job.obj)
    if row is not None and trial.get("primaryContainerName") == row.converter.container_name:
        changes.append(("primaryContainerName", "node", "the TrainJob's training container is `node`"))
    success = trial.get("successCondition")
    if isinstance(success, str) and 'type=="Succeeded"' in success:
        new = success.replace('type=="Succeeded"', 'type=="Complete"')
        changes.append(("successCondition", new, "a TrainJob reports success as condition `Complete`"))
    if trial.get("primaryPodLabels") == _KATIB_MASTER_LABELS:
        changes.append(("primaryPodLabels", _KATIB_NODE0_LABELS, "node 0 of a TrainJob plays the v1 master"))
    findings = []
    for key, value, reason in changes:
        job.fixups.append(([*trial_path, key], value))
        findings.append(
            Finding(
                severity=Severity.INFO,
                path=format_path([*trial_path, key]),
                message=f"set to {json.dumps(value)}: {reason}",
                code="katib-trial-template",
            )
        )
    labels = trial.get("primaryPodLabels")
    if (
        isinstance(labels, dict)
        and labels != _KATIB_MASTER_LABELS
        and any("training.kubeflow.org/" in k for k in labels)
    ):
        findings.append(
            Finding(
                severity=Severity.WARNING,
                path=format_path([*trial_path, "primaryPodLabels"]),
                message="TrainJob pods carry no training.kubeflow.org labels; select node 0 with "
                "batch.kubernetes.io/job-completion-index: '0' instead",
                code="katib-trial-template",
            )
        )
    findings.append(
        Finding(
            severity=Severity.INFO,
            path=format_path(trial_path),
            message="Katib runs TrainJob trials once its katib-config lists "
            "TrainJob.v1alpha1.trainer.kubeflow.org among the trial resources",
            code="katib-trial-resources",
        )
    )
    return findings


def _strings(value: Any, path: list[_PathKey]) -> Iterator[tuple[list[_PathKey], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, [*path, key])
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, [*path, index])


def _get(data: Any, path: list[_PathKey]) -> Any:
    for key in path:
        data = data[key]
    return data


# -- writing --------------------------------------------------------------------------------------------


def _json_indent(text: str) -> int:
    """The indentation a JSON document uses (kubectl writes 4, most tools 2)."""
    match = re.search(r"\n( +)\S", text)
    return len(match.group(1)) if match else 2


def _new_runtimes(
    jobs: list[tuple[_Found, Conversion]], written: set[tuple[str | None, str]]
) -> list[dict[str, Any]]:
    """The derived runtimes of ``jobs`` not yet ``written`` to the stream (now added to it)."""
    runtimes = []
    for _, conversion in jobs:
        runtime = conversion.runtime
        if runtime is not None:
            key = (runtime["metadata"].get("namespace"), runtime["metadata"]["name"])
            if key not in written:
                written.add(key)
                runtimes.append(runtime)
    return runtimes


def _rewrite_json(
    document: _Document,
    converted: list[tuple[_Found, Conversion]],
    indent: int,
    written: set[tuple[str | None, str]],
) -> str:
    data = document.data
    runtimes = _new_runtimes(converted, written)
    for job, conversion in converted:
        assert conversion.trainjob is not None
        new: Any = (
            json.dumps(conversion.trainjob, indent=indent, ensure_ascii=False)
            if job.in_string
            else conversion.trainjob
        )
        data = _set(data, job.path, new)
        for path, value in job.fixups:
            data = _set(data, path, value)
    if runtimes:
        if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
            data = {**data, "items": [*runtimes, *data["items"]]}
        else:
            data = {"apiVersion": "v1", "kind": "List", "items": [*runtimes, data]}
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"


def _set(data: Any, path: list[_PathKey], value: Any) -> Any:
    if not path:
        return value
    data[path[0]] = _set(data[path[0]], path[1:], value)
    return data


def _document_edits(
    document: _Document,
    jobs: list[tuple[_Found, Conversion]],
    template: bool,
    written: set[tuple[str | None, str]],
) -> list[_Edit]:
    """The edits of the stream that replace the document's jobs (and put the derived runtimes not yet
    ``written`` before it)."""
    offset = document.offset
    runtimes = "".join(dump_yaml(runtime, template) + "---\n" for runtime in _new_runtimes(jobs, written))
    edits = _source_edits(document, jobs, template, runtimes)
    return [_Edit(offset + e.start, offset + e.end, e.text) for e in edits]


def _source_edits(
    document: _Document, jobs: list[tuple[_Found, Conversion]], template: bool, runtimes: str
) -> list[_Edit]:
    """The same edits, in the document's source."""
    text = document.source
    start, end = document.span
    if len(jobs) == 1 and not jobs[0][0].path:
        trainjob = jobs[0][1].trainjob
        return [_Edit(start, end, _at_line_start(text, start) + runtimes + dump_yaml(trainjob, template))]
    edits = [_job_edit(text, document.node, job, conversion, template) for job, conversion in jobs]
    node = document.node
    edits.extend(_fixup_edit(text, node, path, value) for job, _ in jobs for path, value in job.fixups)
    if all(edit is not None for edit in edits):
        spliced = _apply(text[start:end], [_Edit(e.start - start, e.end - start, e.text) for e in edits if e])
        if _parses_to(spliced, _replaced(document.data, jobs)):
            edits_ok = [e for e in edits if e is not None]
            if runtimes:
                edits_ok.append(_Edit(start, start, _at_line_start(text, start) + runtimes))
            return edits_ok
    # The jobs could not be replaced in place (aliases, merge keys): write the whole document anew.
    data = _replaced(document.data, jobs)
    return [_Edit(start, end, _at_line_start(text, start) + runtimes + dump_yaml(data, template))]


def _replaced(data: Any, jobs: list[tuple[_Found, Conversion]]) -> Any:
    """A copy of a document with its jobs replaced by their TrainJobs (for the fallback and the check)."""
    data = json.loads(json.dumps(data, default=str))
    for job, conversion in jobs:
        new: Any = conversion.trainjob
        if job.in_string:
            new = dump_yaml(new, False)
        data = _set(data, job.path, new)
        for path, value in job.fixups:
            data = _set(data, path, value)
    return data


def _parses_to(text: str, expected: Any) -> bool:
    try:
        loaded = load_document(text)
    except yaml.YAMLError:
        return False
    return _normalise(loaded) == _normalise(expected)


def _normalise(value: Any) -> Any:
    """Compare documents structurally; embedded manifests compare by their parsed content."""
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, str) and "\n" in value and "kind:" in value:
        try:
            return _normalise(load_document(value))
        except yaml.YAMLError:
            return value
    return json.loads(json.dumps(value, default=str))


def _apply(text: str, edits: list[_Edit]) -> str:
    out, position = [], 0
    for edit in sorted(edits, key=lambda e: e.start):
        out.append(text[position : edit.start])
        out.append(edit.text)
        position = edit.end
    out.append(text[position:])
    return "".join(out)


def _at_line_start(text: str, position: int) -> str:
    """A newline when `position` is preceded by something on its line (for example `--- `)."""
    line_start = text.rfind("\n", 0, position) + 1
    return "" if text[line_start:position].strip() == "" else "\n"


def _job_edit(
    text: str, root: yaml.Node, job: _Found, conversion: Conversion, template: bool
) -> _Edit | None:
    located = _locate(text, root, job.path)
    if located is None:
        return None
    key_node, node = located
    trainjob = conversion.trainjob
    if job.in_string:
        rendered = dump_yaml(trainjob, template)
        if isinstance(node, yaml.ScalarNode) and node.style == "|" and key_node is not None:
            indent = " " * (key_node.start_mark.column + 2)
            body = "".join(indent + line if line else line for line in rendered.splitlines(keepends=True))
            return _Edit(node.start_mark.index, _scalar_end(text, node), "|\n" + body)
        return _Edit(node.start_mark.index, node.end_mark.index, json.dumps(rendered, ensure_ascii=False))
    if isinstance(node, yaml.MappingNode) and node.flow_style:
        return _Edit(node.start_mark.index, node.end_mark.index, json.dumps(trainjob, ensure_ascii=False))
    start, end = _content_span(text, node)
    indent = " " * node.start_mark.column
    rendered = dump_yaml(trainjob, template)
    lines = rendered.splitlines(keepends=True)
    body = lines[0] + "".join(indent + line if line.strip() else line for line in lines[1:])
    return _Edit(start, end, body)


def _fixup_edit(text: str, root: yaml.Node, path: list[_PathKey], value: Any) -> _Edit | None:
    """Replace the value at `path` by `value` in flow style (a scalar or a JSON collection fits anywhere)."""
    located = _locate(text, root, path)
    if located is None:
        return None
    node = located[1]
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        start, end = node.start_mark.index, _scalar_end(text, node) - 1
    elif isinstance(node, yaml.ScalarNode):
        start, end = node.start_mark.index, node.end_mark.index
    else:
        start, end = _content_span(text, node)
        end -= text[start:end].endswith("\n")
    flow = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else emit.scalar(value)
    return _Edit(start, end, flow)


def _scalar_end(text: str, node: yaml.Node) -> int:
    """End of a block scalar's last content line (its trailing blank lines are kept)."""
    start = node.start_mark.index
    stop = start + len(text[start : node.end_mark.index].rstrip())
    return stop + 1 if text[stop : stop + 1] == "\n" else stop


def _locate(text: str, root: yaml.Node, path: list[_PathKey]) -> tuple[yaml.Node | None, yaml.Node] | None:
    """The (key node, value node) at `path`, or None when the value is not written at that place in the text
    (an alias or a merge key brings it from elsewhere)."""
    node: yaml.Node = root
    key_node: yaml.Node | None = None
    for key in path:
        parent = node
        if isinstance(parent, yaml.MappingNode) and isinstance(key, str):
            pairs = [(k, v) for k, v in parent.value if isinstance(k, yaml.ScalarNode) and k.value == key]
            if len(pairs) != 1:
                return None
            key_node, node = pairs[0]
            if not (
                key_node.end_mark.index <= node.start_mark.index
                and node.end_mark.index <= parent.end_mark.index
            ):
                return None
            between = text[key_node.end_mark.index : node.start_mark.index]
            if "*" in between or "<<" in between or not between.lstrip().startswith(":"):
                return None
        elif isinstance(parent, yaml.SequenceNode) and isinstance(key, int):
            node = parent.value[key]
            key_node = None
            previous_end = parent.value[key - 1].end_mark.index if key else parent.start_mark.index
            if node.start_mark.index < previous_end or text[node.start_mark.index] == "*":
                return None
        else:
            return None
        if key_node is not None and key_node.start_mark.index < parent.start_mark.index:
            return None  # a merged pair: written under the anchor, not here
    return key_node, node


def _content_span(text: str, node: yaml.Node) -> tuple[int, int]:
    """Start and end of a node's own text: comment and blank lines after it are not part of it (nor blank
    lines ending a block scalar), a comment on its last line is."""
    start, end = node.start_mark.index, node.end_mark.index
    if not isinstance(node, yaml.CollectionNode) or node.flow_style:
        return start, end
    # A block collection ends where the next token starts: walk back over trailing comments and blank lines,
    # but not into the last block scalar, whose lines may look like comments.
    last: yaml.Node = node
    while isinstance(last, yaml.CollectionNode) and not last.flow_style and last.value:
        last = last.value[-1][1] if isinstance(last, yaml.MappingNode) else last.value[-1]
    floor = max(start, min(last.end_mark.index, end))
    if isinstance(last, yaml.ScalarNode) and last.style in ("|", ">"):  # its last line with content
        floor = max(start, min(_scalar_end(text, last) - 1, floor))
    while end > floor:
        line_start = text.rfind("\n", floor, end - 1) + 1
        if line_start <= floor:
            break
        stripped = text[line_start:end].strip()
        if stripped and not stripped.startswith("#"):
            break
        end = line_start
    return start, end


# -- serialising ----------------------------------------------------------------------------------------


def _mark_numeric_placeholders(value: Any, key: _PathKey | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _mark_numeric_placeholders(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_numeric_placeholders(v) for v in value]
    if key in _NUMERIC_KEYS and is_placeholder(value):
        return Placeholder(value)
    return value


def dump_yaml(obj: Any, template: bool = False) -> str:
    """One YAML document, block style, keys in the object's order; in template mode placeholders in string
    fields are double-quoted and those standing for numbers are left bare."""
    if template:
        return emit.dump(_mark_numeric_placeholders(obj), quote_placeholders=True)
    return emit.dump(obj)
