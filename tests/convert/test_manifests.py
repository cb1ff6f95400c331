"""The manifest-stream layer: finding PyTorchJobs in any stream shape and replacing them in place."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
import yaml

from ferryman.api.trainer import TrainerAPI
from ferryman.convert.manifests import ManifestError, convert_stream, dump_yaml, parse_stream
from ferryman.convert.options import ConvertOptions

OPTIONS = ConvertOptions()

JOB = """\
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  name: mnist
  namespace: team-a
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      template:
        spec:
          containers:
          - name: pytorch
            image: docker.io/example/mnist:1.0
            command: [torchrun, /opt/mnist.py]
    Worker:
      replicas: 2
      template:
        spec:
          containers:
          - name: pytorch
            image: docker.io/example/mnist:1.0
            command: [torchrun, /opt/mnist.py]
"""

CONFIGMAP = """\
# the script, kept verbatim
apiVersion: v1
kind: ConfigMap
metadata:
  name: script   # trailing comment
data:
  a: "1"
"""


def indent(text: str, by: int) -> str:
    return textwrap.indent(text, " " * by)


def documents(text: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def assert_trainjob(obj: Any, name: str = "mnist", nodes: int = 3) -> None:
    assert obj["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert obj["kind"] == "TrainJob"
    assert obj["metadata"]["name"] == name
    assert obj["spec"]["trainer"]["numNodes"] == nodes
    assert obj["spec"]["trainer"]["image"] == "docker.io/example/mnist:1.0"


def test_single_document() -> None:
    result = convert_stream(JOB, OPTIONS)
    (doc,) = documents(result.text)
    assert_trainjob(doc)
    (job,) = result.jobs
    assert (job.document, job.location, job.wrapper, job.name, job.namespace) == (
        0,
        "",
        None,
        "mnist",
        "team-a",
    )
    assert job.status == "converted" and job.trainjob_name == "mnist"
    assert result.changed and not result.template


def test_other_documents_and_comments_stay_byte_for_byte() -> None:
    text = (
        f"# leading comment\n---\n{CONFIGMAP}---\n# about the job\n{JOB}# trailing comment\n---\n{CONFIGMAP}"
    )
    result = convert_stream(text, OPTIONS)
    out = result.text
    assert out.startswith(
        f"# leading comment\n---\n{CONFIGMAP}---\n# about the job\napiVersion: trainer.kubeflow.org"
    )
    assert out.endswith(f"# trailing comment\n---\n{CONFIGMAP}")
    kinds = [doc["kind"] for doc in documents(out)]
    assert kinds == ["ConfigMap", "TrainJob", "ConfigMap"]
    assert result.jobs[0].document == 1


def test_comment_after_a_job_ending_in_a_block_scalar_stays() -> None:
    job = JOB.replace(
        "            command: [torchrun, /opt/mnist.py]\n",
        "            command: [bash, -c]\n"
        "            args:\n"
        "            - |\n"
        "              torchrun /opt/mnist.py\n",
    )
    text = f"{job}\n# about the next one\n---\n{CONFIGMAP}"
    out = convert_stream(text, OPTIONS).text
    assert out.endswith(f"\n# about the next one\n---\n{CONFIGMAP}")
    assert [doc["kind"] for doc in documents(out)] == ["TrainJob", "ConfigMap"]


def test_an_error_in_a_later_document_names_its_line_in_the_stream() -> None:
    text = f"{CONFIGMAP}---\n{JOB}---\na: 1\n b: 2\n"
    with pytest.raises(ManifestError) as raised:
        convert_stream(text, OPTIONS)
    assert raised.value.line == text.count("\n")  # the last line


def test_stream_without_jobs_is_returned_unchanged() -> None:
    trainjob = dump_yaml(documents(convert_stream(JOB, OPTIONS).text)[0])
    for text in (CONFIGMAP, f"{CONFIGMAP}---\n{trainjob}", "# only a comment\n", ""):
        result = convert_stream(text, OPTIONS)
        assert result.text == text
        assert result.jobs == [] and not result.changed


def test_converting_twice_changes_nothing_more_and_is_deterministic() -> None:
    once = convert_stream(JOB, OPTIONS).text
    assert convert_stream(JOB, OPTIONS).text == once
    again = convert_stream(once, OPTIONS)
    assert again.text == once and again.jobs == []


def test_kubectl_list() -> None:
    live = documents(JOB)[0]
    live["metadata"].update(uid="5f0c", resourceVersion="42", managedFields=[{"manager": "kubectl"}])
    live["status"] = {"conditions": [{"type": "Running", "status": "True"}]}
    other = {**live, "metadata": {**live["metadata"], "name": "other"}}
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [live, other], "metadata": {}})
    result = convert_stream(text, OPTIONS)
    (doc,) = documents(result.text)
    assert doc["kind"] == "List"
    assert_trainjob(doc["items"][0])
    assert doc["items"][1]["metadata"]["name"] == "other"
    assert [job.location for job in result.jobs] == ["items[0]", "items[1]"]
    for item in doc["items"]:
        assert "status" not in item
        assert not {"uid", "resourceVersion", "managedFields"} & set(item["metadata"])


def test_anchors_and_merge_keys() -> None:
    text = textwrap.dedent("""\
        apiVersion: kubeflow.org/v1
        kind: PyTorchJob
        metadata: {name: mnist}
        spec:
          pytorchReplicaSpecs:
            Master:
              replicas: 1
              template: &pod
                spec:
                  containers:
                  - &container
                    name: pytorch
                    image: docker.io/example/mnist:1.0
                    command: [torchrun, /opt/mnist.py]
            Worker:
              replicas: 2
              template:
                spec:
                  containers:
                  - <<: *container
        """)
    (doc,) = documents(convert_stream(text, OPTIONS).text)
    assert_trainjob(doc)
    assert doc["spec"]["trainer"]["command"][0] == "torchrun"


UNNAMESPACED_JOB = JOB.replace("  namespace: team-a\n", "")
APPWRAPPER = f"""\
apiVersion: workload.codeflare.dev/v1beta2
kind: AppWrapper
metadata:
  name: wrapped
  namespace: team-b   # the job inherits it
spec:
  components:
  # the training job
  - podSets:
    - replicas: 1
      path: template.spec.pytorchReplicaSpecs.Master.template
    template:
{indent(UNNAMESPACED_JOB, 6)}  - template:
      apiVersion: v1
      kind: ConfigMap
      metadata: {{name: untouched}}
"""


def test_appwrapper_component_converted_in_place() -> None:
    result = convert_stream(APPWRAPPER, OPTIONS)
    (doc,) = documents(result.text)
    assert doc["kind"] == "AppWrapper"
    assert_trainjob(doc["spec"]["components"][0]["template"])
    assert doc["spec"]["components"][1]["template"]["kind"] == "ConfigMap"
    assert "  namespace: team-b   # the job inherits it\n" in result.text
    assert "  # the training job\n" in result.text
    (job,) = result.jobs
    assert (job.wrapper, job.location, job.namespace) == (
        "AppWrapper",
        "spec.components[0].template",
        "team-b",
    )
    assert any(
        f.code == "appwrapper-podsets" and f.path == "spec.components[0].podSets" for f in job.findings
    )
    assert all(f.path.startswith("spec.components[0]") for f in job.findings)


def test_older_appwrapper_generic_items() -> None:
    text = f"""\
apiVersion: mcad.ibm.com/v1beta1
kind: AppWrapper
metadata: {{name: old}}
spec:
  resources:
    GenericItems:
    - replicas: 1
      generictemplate:
{indent(JOB, 8)}"""
    result = convert_stream(text, OPTIONS)
    (doc,) = documents(result.text)
    assert_trainjob(doc["spec"]["resources"]["GenericItems"][0]["generictemplate"])
    assert result.jobs[0].location == "spec.resources.GenericItems[0].generictemplate"


NAMELESS_JOB = UNNAMESPACED_JOB.replace("metadata:\n  name: mnist\n", "")


def test_katib_trial_spec_and_its_template_fields() -> None:
    text = f"""\
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {{name: hpo, namespace: katib}}
spec:
  objective: {{type: maximize, objectiveMetricName: accuracy}}
  trialTemplate:
    primaryContainerName: pytorch  # the v1 container
    successCondition: status.conditions.#(type=="Succeeded")#|#(status=="True")#
    failureCondition: status.conditions.#(type=="Failed")#|#(status=="True")#
    primaryPodLabels:
      training.kubeflow.org/job-role: master
    trialParameters:
    - {{name: lr, reference: lr}}
    trialSpec:
{indent(NAMELESS_JOB, 6)}"""
    result = convert_stream(text, OPTIONS)
    (doc,) = documents(result.text)
    template = doc["spec"]["trialTemplate"]
    trial = template["trialSpec"]
    assert trial["kind"] == "TrainJob" and "name" not in trial.get("metadata", {})
    assert template["primaryContainerName"] == "node"
    assert template["successCondition"] == 'status.conditions.#(type=="Complete")#|#(status=="True")#'
    assert template["failureCondition"] == 'status.conditions.#(type=="Failed")#|#(status=="True")#'
    assert template["primaryPodLabels"] == {"batch.kubernetes.io/job-completion-index": "0"}
    assert "  # the v1 container\n" in result.text and "    - {name: lr, reference: lr}\n" in result.text
    (job,) = result.jobs
    assert (job.wrapper, job.namespace, job.name, job.status) == ("Experiment", "katib", None, "converted")
    codes = {f.path: f.code for f in job.findings if f.code.startswith("katib")}
    assert codes == {
        "spec.trialTemplate.primaryContainerName": "katib-trial-template",
        "spec.trialTemplate.successCondition": "katib-trial-template",
        "spec.trialTemplate.primaryPodLabels": "katib-trial-template",
        "spec.trialTemplate": "katib-trial-resources",
    }
    json_out = json.loads(convert_stream(json.dumps(documents(text)[0]), OPTIONS).text)
    assert json_out == doc


ARGO = f"""\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: train-
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - name: train
        template: submit
      - name: wait
        template: wait
        dependencies: [train]
  - name: submit
    resource:
      action: create
      successCondition: status.replicaStatuses.Worker.succeeded > 0
      manifest: |
{indent(JOB, 8)}
  - name: wait
    container:
      image: bitnami/kubectl
      command: [sh, -c, "kubectl wait --for=condition=Succeeded pytorchjob/mnist"]
  - name: inline-steps
    steps:
    - - name: submit-inline
        inline:
          resource:
            action: create
            manifest: {json.dumps(JOB)}
"""


def test_argo_manifest_strings_in_dag_and_steps() -> None:
    result = convert_stream(ARGO, OPTIONS)
    (doc,) = documents(result.text)
    block = doc["spec"]["templates"][1]["resource"]["manifest"]
    inline = doc["spec"]["templates"][3]["steps"][0][0]["inline"]["resource"]["manifest"]
    for manifest in (block, inline):
        assert isinstance(manifest, str)
        assert_trainjob(yaml.safe_load(manifest))
    assert "      manifest: |\n        apiVersion: trainer.kubeflow.org/v1alpha1\n" in result.text
    assert [job.location for job in result.jobs] == [
        "spec.templates[1].resource.manifest",
        "spec.templates[3].steps[0][0].inline.resource.manifest",
    ]
    codes = {f.code for f in result.jobs[0].findings}
    assert "wrapper-references-v1-job" in codes


def test_job_nested_in_a_custom_object_without_name() -> None:
    body = JOB.replace("metadata:\n  name: mnist\n  namespace: team-a\n", "")
    head = "apiVersion: example.io/v1\nkind: MLJob\nmetadata: {name: outer, namespace: ns}\n"
    text = f"{head}spec:\n  training:\n{indent(body, 4)}"
    result = convert_stream(text, OPTIONS)
    (job,) = result.jobs
    assert (job.wrapper, job.location, job.name, job.namespace) == ("MLJob", "spec.training", None, "ns")
    assert job.status in ("converted", "blocked")


def test_flow_style_embedded_job_is_replaced_by_flow_json() -> None:
    flow = json.dumps(documents(JOB)[0])
    text = (
        f"apiVersion: example.io/v1\nkind: Wrapper\nmetadata: {{name: w}}\nspec: {{job: {flow}, keep: 1}}\n"
    )
    result = convert_stream(text, OPTIONS)
    (doc,) = documents(result.text)
    assert_trainjob(doc["spec"]["job"])
    assert doc["spec"]["keep"] == 1


def test_anchor_used_outside_the_job_falls_back_to_rewriting_the_document() -> None:
    text = f"""\
apiVersion: example.io/v1
kind: Wrapper
metadata: {{name: w}}
spec:
  job: &job
{indent(JOB, 4)}  copy: *job
"""
    result = convert_stream(text, OPTIONS)
    (doc,) = documents(result.text)
    assert_trainjob(doc["spec"]["job"])
    assert_trainjob(doc["spec"]["copy"])
    assert len(result.jobs) == 2


def test_json_input_gives_json_output_with_its_indentation() -> None:
    text = json.dumps(documents(JOB)[0], indent=4)  # kubectl get -o json
    result = convert_stream(text, OPTIONS)
    assert_trainjob(json.loads(result.text))
    assert result.text.startswith('{\n    "apiVersion": "trainer.kubeflow.org/v1alpha1"')


def test_unsupported_api_version_is_reported_and_left_alone() -> None:
    text = JOB.replace("kubeflow.org/v1", "kubeflow.org/v1beta2")
    result = convert_stream(text, OPTIONS)
    assert result.text == text
    (job,) = result.jobs
    assert job.status == "unsupported" and job.blocked
    assert job.findings[0].code == "unsupported-api-version"


HOSTNET = JOB.replace(
    "        spec:\n          containers:",
    "        spec:\n          hostNetwork: true\n          containers:",
)


def test_blocked_job_is_left_unchanged_and_forced_one_is_emitted() -> None:
    blocked = convert_stream(HOSTNET, ConvertOptions(derived_runtime=False))
    assert blocked.text == HOSTNET
    (job,) = blocked.jobs
    assert job.status == "blocked" and job.trainjob_name is None
    assert any(f.severity == "blocker" and "hostNetwork" in f.path for f in job.findings)
    forced = convert_stream(HOSTNET, ConvertOptions(derived_runtime=False, force=True))
    assert forced.jobs[0].status == "forced"
    assert documents(forced.text)[0]["kind"] == "TrainJob"


def test_emitted_runtime_goes_in_its_own_document_before_the_job() -> None:
    text = f"{CONFIGMAP}---\n{HOSTNET}"
    result = convert_stream(text, ConvertOptions())
    kinds = [doc["kind"] for doc in documents(result.text)]
    assert kinds == ["ConfigMap", "TrainingRuntime", "TrainJob"]
    runtime, trainjob = documents(result.text)[1:]
    assert trainjob["spec"]["runtimeRef"]["name"] == runtime["metadata"]["name"]
    assert trainjob["spec"]["runtimeRef"]["kind"] == "TrainingRuntime"
    assert result.jobs[0].status == "converted"


def test_jobs_needing_the_same_settings_share_one_runtime_written_once() -> None:
    second = HOSTNET.replace("name: mnist", "name: mnist-2")
    result = convert_stream(f"{HOSTNET}---\n{second}", ConvertOptions())
    kinds = [doc["kind"] for doc in documents(result.text)]
    assert kinds == ["TrainingRuntime", "TrainJob", "TrainJob"]
    runtime, first, other = documents(result.text)
    assert first["spec"]["runtimeRef"] == other["spec"]["runtimeRef"]
    names = [job.conversion.runtime["metadata"]["name"] for job in result.jobs if job.conversion.runtime]
    assert names == [runtime["metadata"]["name"]] * 2
    elsewhere = convert_stream(second.replace("namespace: team-a", "namespace: team-b"), ConvertOptions())
    assert documents(elsewhere.text)[0]["metadata"]["namespace"] == "team-b"


def test_a_wrapped_jobs_runtime_is_in_the_wrappers_namespace() -> None:
    job = yaml.safe_load(HOSTNET)
    del job["metadata"]["namespace"]
    wrapper = {
        "apiVersion": "workload.codeflare.dev/v1beta2",
        "kind": "AppWrapper",
        "metadata": {"name": "wrapped", "namespace": "team-w"},
        "spec": {"components": [{"template": job}]},
    }
    result = convert_stream(yaml.safe_dump(wrapper, sort_keys=False), ConvertOptions())
    runtime, appwrapper = documents(result.text)
    assert runtime["kind"] == "TrainingRuntime" and runtime["metadata"]["namespace"] == "team-w"
    trainjob = appwrapper["spec"]["components"][0]["template"]
    assert trainjob["spec"]["runtimeRef"]["name"] == runtime["metadata"]["name"]


TEMPLATE = """\
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  name: ${JOB_NAME}
spec:
  pytorchReplicaSpecs:
    Worker:
      replicas: $NUM_NODES
      template:
        spec:
          containers:
          - name: pytorch
            image: ${IMAGE_URI}
            command: [torchrun, "--nnodes=$NUM_NODES", /opt/train.py]
            env:
            - name: HF_TOKEN
              value: "${HF_TOKEN}"
"""


def envsubst(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("${" + key + "}", value).replace("$" + key, value)
    return text


def test_template_keeps_placeholders_and_substitutes_to_the_right_types() -> None:
    result = convert_stream(TEMPLATE, OPTIONS)
    assert result.template
    assert "numNodes: $NUM_NODES\n" in result.text
    assert 'image: "${IMAGE_URI}"' in result.text
    rendered = envsubst(
        result.text, {"JOB_NAME": "llm", "NUM_NODES": "4", "IMAGE_URI": "img:1", "HF_TOKEN": "123"}
    )
    (doc,) = documents(rendered)
    trainer = doc["spec"]["trainer"]
    assert trainer["numNodes"] == 4
    assert trainer["image"] == "img:1"
    assert trainer["command"][1] == "--nnodes=4"
    assert {"name": "HF_TOKEN", "value": "123"} in trainer["env"]


def test_template_mode_detection_and_override() -> None:
    shell_only = JOB.replace("/opt/mnist.py]", "/opt/mnist.py, --out=$OUTPUT_DIR]")
    assert not convert_stream(shell_only, OPTIONS).template
    assert convert_stream(shell_only, OPTIONS, template=True).template
    assert not convert_stream(TEMPLATE, OPTIONS, template=False).template


def test_trainer_api_flavour_is_passed_through() -> None:
    with_pod_settings = JOB.replace(
        "        spec:\n          containers:",
        "        spec:\n          nodeSelector: {pool: gpu}\n          containers:",
    )
    shapes = {}
    for api in TrainerAPI:
        (doc,) = documents(convert_stream(with_pod_settings, ConvertOptions(trainer_api=api)).text)
        shapes[api] = set(doc["spec"]) & {"podSpecOverrides", "podTemplateOverrides", "runtimePatches"}
    assert shapes == {
        TrainerAPI.V2_0: {"podSpecOverrides"},
        TrainerAPI.V2_1: {"podTemplateOverrides"},
        TrainerAPI.V2_2: {"runtimePatches"},
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("apiVersion: v1\nkind: PyTorchJob\nmetadata:\n  name: {{ .Values.name }}\n", 4),
        ("{{- if .Values.enabled }}\napiVersion: kubeflow.org/v1\n", 1),
        ("a: 1\n b: 2\n", 2),
        ("a: [1, 2\n", 2),
    ],
)
def test_invalid_yaml_names_the_line(text: str, line: int) -> None:
    with pytest.raises(ManifestError) as raised:
        convert_stream(text, OPTIONS)
    assert raised.value.line == line
    assert str(raised.value).startswith(f"line {line}, column ")
    assert ("Helm" in raised.value.message) == ("{{" in text)


def test_parse_stream_skips_empty_documents_but_counts_them() -> None:
    docs = parse_stream("---\n---\na: 1\n---\n# nothing\n---\nb: 2\n")
    assert [(d.index, d.data) for d in docs] == [(1, {"a": 1}), (3, {"b": 2})]


def test_dump_yaml_writes_multiline_strings_as_literal_blocks() -> None:
    out = dump_yaml({"args": ["line one\nline two\n"], "name": "x"})
    assert out == "args:\n- |\n  line one\n  line two\nname: x\n"


def test_windows_line_ends_are_kept() -> None:
    text = f"{CONFIGMAP}---\n{JOB}".replace("\n", "\r\n")
    out = convert_stream(text, OPTIONS).text
    assert out.startswith(CONFIGMAP.replace("\n", "\r\n"))
    assert "\n" not in out.replace("\r\n", "")
    assert_trainjob(documents(out)[1])


def test_argo_resource_conditions_are_reported() -> None:
    (job, _) = convert_stream(ARGO, OPTIONS).jobs
    (finding,) = [f for f in job.findings if f.code == "argo-resource-condition"]
    assert finding.path == "spec.templates[1].resource.successCondition"
