"""Conversion throughput on 1,000 generated PyTorchJobs (goal: at least 2,000 jobs/s on one core).

End to end is what `ferryman convert jobs.yaml -o out.yaml --report json` does: read the file, find and
convert the jobs, write the stream back and render the report. Baseline, measured in the same run on the
same stream: a plain PyYAML round trip in memory (C loader and dumper), the floor any manifest rewriter
pays; the ratio says what converting costs next to it. Lines below break the time down.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ferryman.cli.convert import run_convert
from ferryman.convert import manifests
from ferryman.convert.manifests import convert_stream, dump_yaml
from ferryman.convert.options import ConvertOptions
from ferryman.convert.registry import convert_job

JOBS = 1000
GOAL = 2000.0  # jobs/s, end to end, one core
REPEATS = 3

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

IMAGES = ["ghcr.io/acme/train:2.4.1-cuda12.4", "nvcr.io/nvidia/pytorch:24.08-py3", "docker.io/acme/mnist:1.3"]
GPUS = ["nvidia.com/gpu", "amd.com/gpu", "nvidia.com/a100"]


def _container(rng: random.Random, command: list[str], gpu: bool) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "pytorch",
        "image": rng.choice(IMAGES),
        "command": command,
        "args": [f"--epochs={rng.randint(1, 90)}", f"--lr=0.{rng.randint(1, 999):03d}"],
        "env": [
            {"name": "NCCL_DEBUG", "value": "WARN"},
            {"name": "RUN_ID", "value": f"r{rng.randint(0, 10**6)}"},
        ],
        "resources": {
            "requests": {"cpu": str(rng.choice([2, 4, 8])), "memory": f"{rng.choice([8, 16, 64])}Gi"}
        },
    }
    if gpu:
        count = rng.choice([1, 2, 4, 8])
        container["resources"]["limits"] = {rng.choice(GPUS): count}
    return container


def _job(rng: random.Random, index: int) -> dict[str, Any]:
    """One of five shapes: single node GPU, Master+Worker torchrun, plain python, pod settings, live dump."""
    shape = index % 5
    name = f"job-{index:04d}-{rng.choice(['bert', 'llama', 'resnet', 'vit'])}"
    command = (
        ["python", "/opt/train.py"] if shape == 2 else ["torchrun", "--nproc_per_node=auto", "/opt/train.py"]
    )
    pod: dict[str, Any] = {"containers": [_container(rng, command, gpu=shape != 2)]}
    metadata: dict[str, Any] = {"name": name, "namespace": f"team-{rng.randint(1, 9)}"}
    spec: dict[str, Any] = {}
    if shape == 3:
        metadata["labels"] = {"kueue.x-k8s.io/queue-name": "gpu-queue"}
        pod.update(
            nodeSelector={"pool": "a100"},
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            serviceAccountName="trainer",
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}],
        )
        pod["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        spec["runPolicy"] = {"suspend": True, "activeDeadlineSeconds": 86400}
    template = {"metadata": {"labels": {"app": name}}, "spec": pod}
    replicas: dict[str, Any] = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if shape != 0:
        replicas["Worker"] = {
            "replicas": rng.randint(1, 7),
            "restartPolicy": "OnFailure",
            "template": template,
        }
    spec["pytorchReplicaSpecs"] = replicas
    job: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": metadata,
        "spec": spec,
    }
    if shape == 4:
        metadata.update(
            uid=f"uid-{index}", resourceVersion=str(index), creationTimestamp="2026-01-01T00:00:00Z"
        )
        job["status"] = {"conditions": [{"type": "Created", "status": "True", "reason": "PyTorchJobCreated"}]}
    return job


def generate_stream(jobs: int = JOBS, seed: int = 7) -> str:
    """A multi-document YAML stream of `jobs` varied PyTorchJobs (deterministic)."""
    rng = random.Random(seed)
    return "---\n".join(dump_yaml(_job(rng, index)) for index in range(jobs))


def corpus_mix_stream(jobs: int = JOBS) -> tuple[str, str]:
    """A stream of `jobs` real PyTorchJobs, cycled and renamed, and where they came from: the corpus
    (FERRYMAN_CORPUS) when set, else the bundled examples and the golden-test jobs. Real jobs are larger than
    the generated ones: long scripts, sidecars, elastic policies, differing Master and Worker templates."""
    corpus = os.environ.get("FERRYMAN_CORPUS")
    repo = Path(__file__).resolve().parents[2]
    if corpus:
        files, origin = sorted((Path(corpus) / "pytorchjobs").glob("*.yaml")), f"{corpus}/pytorchjobs"
    else:
        files = sorted((repo / "examples" / "pytorchjobs").glob("*.yaml"))
        files += sorted((repo / "tests" / "convert" / "data" / "jobs").glob("*.yaml"))
        origin = "examples/pytorchjobs and tests/convert/data/jobs"
    real = [
        doc
        for path in files
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader)
        if isinstance(doc, dict) and doc.get("kind") == "PyTorchJob"
        and "$" not in json.dumps(doc, default=str)  # envsubst templates are not runnable jobs
    ]
    stream = []
    for index in range(jobs):
        doc = copy.deepcopy(real[index % len(real)])
        doc["metadata"]["name"] = f"{doc['metadata'].get('name', 'job')}-{index}"[-48:].lstrip("-")
        stream.append(dump_yaml(doc))
    return "---\n".join(stream), f"{len(real)} real jobs from {origin}"


def _best(run: Callable[[], object]) -> float:
    """Best CPU time of this process over REPEATS runs (the machine may be shared: wall time would lie)."""
    times = []
    for _ in range(REPEATS):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    text = generate_stream()
    options = ConvertOptions()
    documents = list(yaml.load_all(text, Loader=_Loader))
    result = convert_stream(text, options)
    converted = sum(job.status == "converted" for job in result.jobs)
    assert len(result.jobs) == JOBS, len(result.jobs)

    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as scratch:
        source, target = Path(scratch) / "jobs.yaml", Path(scratch) / "out" / "trainjobs.yaml"
        source.write_text(text, encoding="utf-8")

        def cli() -> None:  # what `ferryman convert jobs.yaml -o out/trainjobs.yaml --report json` does
            assert (
                run_convert([str(source)], options, output=target, report_format="json", stdout=io.StringIO())
                == 0
            )

        baseline = _best(lambda: yaml.dump_all(list(yaml.load_all(text, Loader=_Loader)), Dumper=_Dumper))
        end_to_end = _best(cli)
    library = _best(lambda: convert_stream(text, options))
    convert_only = _best(lambda: [convert_job(doc, options) for doc in documents])
    # The stream layer alone: the same convert_stream with each job's conversion looked up, not computed.
    done = {doc["metadata"]["name"]: convert_job(doc, options) for doc in documents}
    real, manifests.convert_job = (
        manifests.convert_job,
        lambda obj, _: done[obj["metadata"]["name"]],
    )
    try:
        stream_only = _best(lambda: convert_stream(text, options))
    finally:
        manifests.convert_job = real

    mix, origin = corpus_mix_stream()
    mix_rate = _best(lambda: convert_stream(mix, options))

    def rate(seconds: float) -> str:
        return f"{JOBS / seconds:8.0f} jobs/s  ({seconds * 1e6 / JOBS:6.0f} us/job)"

    print(
        f"stream: {JOBS} generated PyTorchJobs, {len(text) / 1e6:.2f} MB, {converted} converted, "
        f"libyaml={'yes' if _Loader is not yaml.SafeLoader else 'no'}, best of {REPEATS} by CPU time, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (load slows all lines alike)"
    )
    print(f"baseline  PyYAML load_all + dump_all, in memory        {rate(baseline)}")
    print(f"ferryman  convert file -> file + JSON report (the CLI) {rate(end_to_end)}")
    print(f"ferryman  convert_stream, in memory (library)          {rate(library)}")
    print(f"ferryman  convert_job only (the converters)            {rate(convert_only)}")
    print(f"ferryman  stream layer only (no conversion)            {rate(stream_only)}")
    print(f"ferryman  convert_stream, corpus-like mix ({len(mix) / 1e6:.2f} MB)    {rate(mix_rate)}")
    print(f"          the mix: {JOBS} jobs cycling {origin}")
    print(
        f"ratio     CLI end to end / baseline time: {end_to_end / baseline:.2f}x "
        "(what converting costs next to a plain YAML round trip)"
    )
    verdict = "met" if JOBS / end_to_end >= GOAL else "NOT met"
    print(
        f"goal      >= {GOAL:.0f} jobs/s end to end on one core: {verdict} ({JOBS / end_to_end:.0f} jobs/s)"
    )


if __name__ == "__main__":
    main()
