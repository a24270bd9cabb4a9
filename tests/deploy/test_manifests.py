"""The KServe manifests: valid against the v0.13.1 CRD schema, one per seed-table row, wired right."""

import copy
import re
import subprocess
import sys

import jsonschema
import pytest
import yaml
from blubber_config import REPO_ROOT, load_blubber, production_variants

from deploy.render import Values, render
from deploy.seed_table import load_rows

CRD = REPO_ROOT.parent / "shared" / "schemas" / "kserve-v0.13.1-inferenceservices.crd.yaml"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
STORAGE_URI = re.compile(r"^s3://wmf-ml-models/[a-z0-9-]+/[a-z0-9-]+/\d{14}/$")


def strict(schema):
    """The CRD schema with unknown fields rejected. The API server silently prunes fields the schema
    does not know, so a misspelt key ("readinesProbe") would otherwise vanish without an error."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@pytest.fixture(scope="module")
def crd_validator():
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def rows():
    return load_rows()


@pytest.fixture(scope="module")
def manifests(rows):
    return list(yaml.safe_load_all(render(Values.load(), rows)))


def env(container):
    return {item["name"]: item["value"] for item in container["env"]}


def test_every_manifest_validates_against_the_crd_schema(manifests, crd_validator):
    for manifest in manifests:
        errors = [f"{list(e.path)}: {e.message}" for e in crd_validator.iter_errors(manifest)]
        assert not errors, (manifest["metadata"]["name"], errors[:3])


def test_the_strict_schema_catches_a_misspelt_field(manifests, crd_validator):
    broken = copy.deepcopy(manifests[0])
    container = broken["spec"]["predictor"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    assert not crd_validator.is_valid(broken)


def test_one_inference_service_per_row_in_its_namespace(manifests, rows):
    assert len(manifests) == len(rows) + 1 == 112  # every row, and the ores API
    by_name = {m["metadata"]["name"]: m for m in manifests}
    assert set(by_name) == {row.isvc for row in rows} | {"ores"}
    for row in rows:
        manifest = by_name[row.isvc]
        assert manifest["kind"] == "InferenceService"
        assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
        assert manifest["metadata"]["namespace"] == row.namespace
        assert DNS_1035.match(row.isvc) and len(row.isvc) <= 63


def test_revscoring_services_get_their_model_wiki_and_image(manifests, rows):
    by_name = {m["metadata"]["name"]: m for m in manifests}
    for row in (r for r in rows if r.is_revscoring):
        predictor = by_name[row.isvc]["spec"]["predictor"]
        assert "transformer" not in by_name[row.isvc]["spec"]
        (container,) = predictor["containers"]
        variables = env(container)
        assert variables["INFERENCE_NAME"] == row.isvc
        assert variables["WIKI_HOST"] == row.domain
        assert variables["WIKI_URL"].startswith("https://")
        assert STORAGE_URI.match(variables["STORAGE_URI"])
        assert f"/{row.model_type}/{row.dbname}/" in variables["STORAGE_URI"]
        assert container["image"].endswith(f"-{row.images[0]}:stable")
        assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{row.isvc}"
        probe_port = container["readinessProbe"]["httpGet"]["port"]
        assert probe_port == container["ports"][0]["containerPort"] == 8080
        assert predictor["serviceAccountName"] == "kserve"
        assert container["resources"]["requests"]["memory"]


def test_outlink_service_has_predictor_and_transformer(manifests):
    (outlink,) = [m for m in manifests if m["metadata"]["name"] == "outlink-topic-model"]
    predictor = outlink["spec"]["predictor"]["containers"][0]
    transformer = outlink["spec"]["transformer"]["containers"][0]
    assert predictor["image"].endswith("-outlink:stable")
    assert transformer["image"].endswith("-outlink-transformer:stable")
    assert STORAGE_URI.match(env(predictor)["STORAGE_URI"])
    assert "STORAGE_URI" not in env(transformer) and env(transformer)["WIKI_URL"]


def test_the_ores_api_calls_lift_wing_and_needs_no_model(manifests):
    (ores,) = [m for m in manifests if m["metadata"]["name"] == "ores"]
    assert ores["metadata"]["namespace"] == "ores"
    (container,) = ores["spec"]["predictor"]["containers"]
    assert container["image"].endswith("-ores:stable")
    assert env(container) == {"LIFTWING_URL": Values.load().raw["ores"]["liftwing_url"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/"  # KServe's liveness route; no model
    assert "serviceAccountName" not in ores["spec"]["predictor"]  # reads no model storage


def test_every_image_pulled_is_a_variant_of_blubber_yaml(manifests):
    pulled = {c["image"].rsplit(":", 1)[0].split("/")[-1]
              for m in manifests for component in m["spec"].values() for c in component["containers"]}
    project = Values.load().raw["images"]["project"]
    assert pulled == {f"{project}-{variant}" for variant in production_variants()}


def test_bucket_and_versions_come_from_the_values(rows, tmp_path):
    raw = yaml.safe_load((REPO_ROOT / "deploy" / "values.yaml").read_text(encoding="utf-8"))
    raw["storage"]["bucket"] = "other-bucket"
    raw["storage"]["overrides"] = {"enwiki-damaging": "20240101000000"}
    manifests = {m["metadata"]["name"]: m for m in yaml.safe_load_all(render(Values(raw), rows))}
    uri = env(manifests["enwiki-damaging"]["spec"]["predictor"]["containers"][0])["STORAGE_URI"]
    assert uri == "s3://other-bucket/damaging/enwiki/20240101000000/"
    other = env(manifests["enwiki-goodfaith"]["spec"]["predictor"]["containers"][0])["STORAGE_URI"]
    assert other == f"s3://other-bucket/goodfaith/enwiki/{raw['storage']['versions']['goodfaith']}/"


def test_service_accounts_cover_every_namespace(rows):
    documents = list(yaml.safe_load_all(render(Values.load(), rows, with_service_accounts=True)))
    accounts = [d for d in documents if d["kind"] == "ServiceAccount"]
    assert {a["metadata"]["namespace"] for a in accounts} == {row.namespace for row in rows}
    assert sum(d["kind"] == "InferenceService" for d in documents) == 112


def test_command_line_prints_112_inference_services():
    result = subprocess.run([sys.executable, "-m", "deploy.render"], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True, timeout=120)
    assert sum(line == "kind: InferenceService" for line in result.stdout.splitlines()) == 112


def components(manifest):
    return [manifest["spec"][name] for name in ("predictor", "transformer") if name in manifest["spec"]]


def test_every_container_runs_hardened_as_the_images_user_writing_only_to_empty_dirs(manifests):
    runs_as = load_blubber()["runs"]["uid"]  # the user blubber.yaml's images run as
    for manifest in manifests:
        for part in components(manifest):
            volumes = {volume["name"]: volume for volume in part["volumes"]}
            for container in part["containers"]:
                context = container["securityContext"]
                assert context["runAsNonRoot"] is True and context["runAsUser"] == runs_as != 0
                assert context["readOnlyRootFilesystem"] is True
                assert context["allowPrivilegeEscalation"] is False
                assert context["capabilities"] == {"drop": ["ALL"]}
                assert context["seccompProfile"] == {"type": "RuntimeDefault"}
                mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}
                assert "/tmp" in mounts and all("emptyDir" in volume for volume in mounts.values())


BENCHMARK_README = REPO_ROOT / "benchmark" / "README.md"
BENCHMARKED = {"editquality": "enwiki-damaging", "articlequality": "enwiki-articlequality",
               "outlink": "outlink-topic-model"}


def benchmark_record(service):
    """What the benchmark's written results (benchmark/README.md) say of one service: throughput held to
    one core, the sweep (concurrency -> throughput, p99) and the heavy request's p50."""
    text = BENCHMARK_README.read_text(encoding="utf-8")
    section = text.split(f"#### {service} (")[1].split("####")[0]
    one_core = float(re.search(r"held to 1 core \|[^|]*\|[^|]*\|[^|]*\| [\d.]+ / ([\d.]+) req/s", section)[1])
    sweep = {int(c): (float(rps), float(p99)) for c, rps, p99 in
             re.findall(r"^\| (\d+) \| ([\d.]+) \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|", section, re.M)}
    heavy = re.search(r"heavy p50 (\d+) ms", section)
    return one_core, sweep, (int(heavy[1]) / 1000 if heavy else None)


def test_autoscaling_inputs_are_the_benchmarks_written_results():
    measured = Values.load().raw["autoscaling"]["measured"]
    assert set(measured) == set(BENCHMARKED)
    for image, service in BENCHMARKED.items():
        one_core, sweep, heavy = benchmark_record(service)
        assert measured[image]["saturation_rps"] == one_core
        best = max(rps for rps, _ in sweep.values())
        knee = min(c for c, (rps, _) in sweep.items() if rps >= 0.95 * best)
        assert measured[image]["knee_concurrency"] == knee
        slowest = round(heavy, 1) if heavy is not None else max(p99 for _, p99 in sweep.values()) / 1000
        assert measured[image]["slowest_request_s"] == pytest.approx(slowest)  # 15.1 ms / 1000 is not 0.0151


def test_autoscaling_targets_follow_from_one_replicas_measured_saturation(manifests):
    values = Values.load().raw
    settings, limits = values["autoscaling"], values["resources"]
    for manifest in manifests:
        for part in components(manifest):
            (container,) = part["containers"]
            image = next(i for i in images_of(values) if container["image"].endswith(f"-{i}:stable"))
            assert limits.get(image, limits["default"])["limits"]["cpu"] == "1"  # the benchmark's one core
            one_core, sweep, _ = benchmark_record(BENCHMARKED[settings["same_as"].get(image, image)])
            assert part["scaleMetric"] == "rps"
            assert part["scaleTarget"] == int(0.7 * one_core) < one_core
            assert part["containerConcurrency"] >= 1 and part["timeout"] % 5 == 0
            # a full replica's queue drains well within the timeout
            assert part["containerConcurrency"] / one_core < part["timeout"]


def images_of(values):
    """Every image a manifest pulls, longest name first (`outlink-transformer` before `outlink`)."""
    return sorted(production_variants(), key=len, reverse=True)


def test_a_request_may_take_every_mediawiki_retry_before_the_timeout(manifests):
    """The revscoring servers' own worst case (python/wikiserve/config.py defaults: 3 attempts of 5 s with
    2 s backoff per MediaWiki round; damaging makes two rounds) fits in its component's timeout."""
    by_name = {m["metadata"]["name"]: m for m in manifests}
    assert by_name["enwiki-damaging"]["spec"]["predictor"]["timeout"] >= 2 * (3 * 5 + 2 * 2)
    assert by_name["enwiki-articlequality"]["spec"]["predictor"]["timeout"] >= 3 * 5 + 2 * 2


def with_values(rows, **changes):
    raw = yaml.safe_load((REPO_ROOT / "deploy" / "values.yaml").read_text(encoding="utf-8"))
    raw.update(changes)
    return {m["metadata"]["name"]: m for m in yaml.safe_load_all(render(Values(raw), rows))}


def test_the_outlink_transformer_posts_the_events(rows):
    """It checks a page-change event against MediaWiki and posts the topic event; the predictor cannot
    reach MediaWiki, so it gets no EventGate."""
    outlink = with_values(rows, eventgate={"url": "https://eventgate.example:4492/v1/events",
                                           "stream": "mediawiki.revision-score"})["outlink-topic-model"]
    transformer = outlink["spec"]["transformer"]["containers"][0]
    predictor = outlink["spec"]["predictor"]["containers"][0]
    assert env(transformer)["EVENTGATE_URL"] == "https://eventgate.example:4492/v1/events"
    assert "EVENTGATE_STREAM" not in env(transformer)  # its own stream, not revscoring's
    assert "EVENTGATE_URL" not in env(predictor)


def test_a_canary_sends_its_share_of_traffic_to_the_newest_revision(rows, crd_validator):
    manifests = with_values(rows, canary={"enwiki-damaging": 10, "outlink-topic-model": 25})
    damaging = manifests["enwiki-damaging"]
    assert damaging["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert {part["canaryTrafficPercent"] for part in components(manifests["outlink-topic-model"])} == {25}
    assert "canaryTrafficPercent" not in manifests["enwiki-goodfaith"]["spec"]["predictor"]
    assert crd_validator.is_valid(damaging) and crd_validator.is_valid(manifests["outlink-topic-model"])


@pytest.mark.parametrize("changes, message", [
    ({"canary": {"enwiki-damaging": 150}}, "enwiki-damaging: 150 is not a whole percentage"),
    ({"canary": {"enwiki-damaging": "10%"}}, "not a whole percentage"),
    ({"canary": {"enwiki-damaging": 10}, "deployment_mode": "RawDeployment"},
     "needs deployment_mode Serverless"),
])
def test_a_canary_kserve_cannot_serve_is_refused(rows, changes, message):
    with pytest.raises(ValueError, match=message):
        with_values(rows, **changes)


def test_the_outlink_predictor_declares_grpc_only_where_kserve_routes_a_second_port(rows, crd_validator):
    for mode, expected in (("Serverless", [8080]), ("RawDeployment", [8080, 8081])):
        manifests = with_values(rows, deployment_mode=mode)
        outlink = manifests["outlink-topic-model"]
        assert outlink["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode
        predictor = outlink["spec"]["predictor"]["containers"][0]
        assert [port["containerPort"] for port in predictor["ports"]] == expected
        assert crd_validator.is_valid(outlink)
        transformer = outlink["spec"]["transformer"]["containers"][0]
        assert [port["containerPort"] for port in transformer["ports"]] == [8080]
        damaging = manifests["enwiki-damaging"]["spec"]["predictor"]["containers"][0]
        assert [port["containerPort"] for port in damaging["ports"]] == [8080]
