"""docker-compose.yml against the Compose Specification's JSON schema and against the code.

Schema: tests/deploy/schemas/compose-spec.json, the compose-spec schema as shipped in the npm
package dclint 3.1.0 (schemas/compose.schema.json; see tests/deploy/schemas/README.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from evi.settings import TopicSettings
from gateway.settings import GatewaySettings
from processors.models import default_models
from processors.settings import ProcessorSettings
from tests.deploy.dockerfile import parse
from tests.deploy.support import (
    REPO,
    Obj,
    compose_command,
    compose_env,
    effective_settings,
    image_env,
    topics_created,
)

SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
KAFKA_DOCKERFILE = REPO / "deploy" / "kafka" / "Dockerfile"
SCHEMA_SHA256 = "46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496"
EVI_SERVICES = ("topics", "producer", "processor-face", "gateway")
# Properties that differ on purpose between the dev broker (kafka.sh) and the container.
PER_HOST = {"listeners", "advertised.listeners", "listener.security.protocol.map",
            "controller.quorum.voters", "log.dirs",
            "num.network.threads", "num.io.threads", "log.retention.hours",
            "log.retention.check.interval.ms", "log.segment.bytes",
            "num.recovery.threads.per.data.dir", "socket.send.buffer.bytes",
            "socket.receive.buffer.bytes"}


def kafka_properties(service: Obj) -> dict[str, str]:
    """The apache/kafka image's env -> server.properties mapping: KAFKA_A_B -> a.b
    (`__` -> `_`, `___` -> `-`), minus the variables its scripts use themselves."""
    out = {}
    for key, value in compose_env(service).items():
        if not key.startswith("KAFKA_") or key in ("KAFKA_HEAP_OPTS", "KAFKA_OPTS"):
            continue
        name = key[len("KAFKA_"):].lower()
        name = name.replace("___", "-").replace("__", "\0").replace("_", ".").replace("\0", "_")
        out[name] = value
    return out


def server_properties() -> dict[str, str]:
    out = {}
    for line in (REPO / "deploy" / "kafka" / "server.properties").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def pom_kafka_version() -> str:
    root = ET.parse(REPO / "deploy" / "kafka" / "pom.xml").getroot()
    ns = {"m": root.tag.split("}")[0].strip("{")}
    version = root.find("m:properties/m:kafka.version", ns)
    assert version is not None and version.text
    return version.text


def settings_of(compose: Obj, name: str) -> Obj:
    service = compose["services"][name]
    return effective_settings(compose_command(service), image_env() | compose_env(service))


def health_url(service: Obj) -> str:
    test = service["healthcheck"]["test"]
    (url,) = re.findall(r"http://[^'\" ]+", " ".join(test))
    return str(url)


def test_schema_is_the_vendored_one() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_matches_the_compose_spec(compose: Obj) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(compose)


def test_schema_rejects_a_typo(compose: Obj) -> None:
    schema = json.loads(SCHEMA.read_text())
    bad = json.loads(json.dumps(compose))
    bad["services"]["gateway"]["depends_on"]["topics"]["condition"] = "service_complete"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(bad)
    bad = json.loads(json.dumps(compose))
    bad["services"]["gateway"]["helthcheck"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(bad)


def test_kafka_is_built_from_the_dev_brokers_release(compose: Obj) -> None:
    """Our image of pom.xml's jars by default; the official apache/kafka image of the same
    release as the other target of the same Dockerfile (EVI_KAFKA_TARGET=apache)."""
    kafka = compose["services"]["kafka"]
    version = pom_kafka_version()
    assert kafka["image"] == f"evi-kafka:{version}"
    build = kafka["build"]
    assert build["context"] == "deploy/kafka"
    assert build["target"] == "${EVI_KAFKA_TARGET:-local}"
    assert build["args"] == {"KAFKA_VERSION": version}
    args, stages = parse(KAFKA_DOCKERFILE)
    assert args["KAFKA_VERSION"] == version and args["BASE_IMAGE"] == "debian:bookworm-slim"
    bases = {st.name: st.base for st in stages}
    assert bases == {"jre": "debian:bookworm-slim", "jars": "jre",
                     "apache": f"apache/kafka:{version}", "local": "jre"}
    assert stages[-1].name == "local", "a plain `docker build` makes the local image"
    cluster_id = compose_env(kafka)["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_kafka_image_runs_the_pom_jars_on_debians_jre(compose: Obj) -> None:
    _, stages = parse(KAFKA_DOCKERFILE)
    by_name = {st.name: st for st in stages}
    jre = " ".join(r.args for r in by_name["jre"].all("RUN"))
    assert "openjdk-17-jre-headless" in jre
    jars = " ".join(r.args for r in by_name["jars"].all("RUN"))
    # The command kafka.sh's fetch runs, on the same pom.xml.
    assert ("dependency:copy-dependencies -DoutputDirectory=/opt/kafka/libs "
            "-DincludeScope=runtime") in jars
    assert "dependency:copy-dependencies" in (REPO / "deploy/kafka/kafka.sh").read_text()
    assert "io.prometheus.jmx:jmx_prometheus_javaagent:" in jars
    for name in ("local", "apache"):
        env = by_name[name].env()
        assert "-javaagent:/opt/kafka/agent/jmx_prometheus_javaagent.jar=9404:" in env[
            "KAFKA_OPTS"], name
        copies = [c.words() for c in by_name[name].all("COPY") if c.flags.get("from") == "jars"]
        assert ["/opt/kafka/agent", "/opt/kafka/agent"] in copies, name
    local = by_name["local"]
    (user,) = local.all("USER")
    assert user.args.split(":")[0] != "0"
    assert "maven" not in " ".join(r.args for r in local.all("RUN")), "no Maven at run time"
    assert "9404" in compose["services"]["kafka"]["expose"]


def test_kafka_config_matches_deploy_kafka(compose: Obj) -> None:
    ours = kafka_properties(compose["services"]["kafka"])
    theirs = server_properties()
    shared = (set(ours) & set(theirs)) - PER_HOST
    assert {"message.max.bytes", "replica.fetch.max.bytes", "auto.create.topics.enable",
            "offsets.topic.num.partitions", "group.initial.rebalance.delay.ms",
            "log.cleaner.dedupe.buffer.size"} <= shared
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}
    assert int(ours["message.max.bytes"]) == 10 << 20
    assert int(ours["message.max.bytes"]) >= TopicSettings().max_message_bytes


def test_kafka_is_reachable_from_the_other_containers(compose: Obj) -> None:
    props = kafka_properties(compose["services"]["kafka"])
    advertised = dict(item.split("://") for item in props["advertised.listeners"].split(","))
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    listeners = dict(item.split("://") for item in props["listeners"].split(","))
    assert set(advertised) <= set(listeners) and set(listeners) <= set(protocols)
    internal = advertised[props["inter.broker.listener.name"]]
    assert internal.split(":")[0] == "kafka"  # the service name
    assert props["controller.quorum.voters"] == f"1@kafka:{listeners['CONTROLLER'].split(':')[-1]}"
    for name in EVI_SERVICES:
        env = compose_env(compose["services"][name])
        assert env["EVI_KAFKA__BOOTSTRAP_SERVERS"] == internal, name
    # The probe runs inside the container: localhost, on the listener the others use.
    health = compose["services"]["kafka"]["healthcheck"]["test"]
    assert health == ["CMD", "/opt/kafka/kafka-ready", internal.split(":")[1]]


def test_no_health_check_starts_a_jvm(compose: Obj) -> None:
    for name, service in compose["services"].items():
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        assert not re.search(r"\bjava\b|kafka-[a-z-]+\.sh", test), (name, test)


def test_published_ports_bind_localhost_unless_the_user_opts_in(compose: Obj) -> None:
    published = {name: s["ports"] for name, s in compose["services"].items() if "ports" in s}
    assert set(published) == {"kafka", "gateway", "prometheus", "grafana"}
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("${EVI_PUBLISH_ADDR:-127.0.0.1}:"), (name, port)


def test_each_processor_has_as_many_cpus_as_inference_threads(compose: Obj) -> None:
    processors = {n: s for n, s in compose["services"].items() if n.startswith("processor-")}
    assert len(processors) >= 2
    for name, service in processors.items():
        assert service["cpus"] == "${EVI_PROCESSOR_CPUS:-1}", name
        assert service["environment"]["EVI_THREADS"] == service["cpus"], name
        assert compose_env(service, {"EVI_PROCESSOR_CPUS": "3"})["EVI_THREADS"] == "3"
        assert settings_of(compose, name)["threads"] == 1, "the default: one CPU, one thread"
        assert service["restart"] == "unless-stopped", name


def test_start_up_order_has_no_races(compose: Obj) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dep, rule in service.get("depends_on", {}).items():
            condition = rule["condition"]
            assert condition in ("service_healthy", "service_completed_successfully",
                                 "service_started"), (name, dep)
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
            if condition == "service_completed_successfully":
                assert services[dep]["restart"] == "no", dep
            if dep not in ("prometheus", "gateway"):
                assert condition != "service_started", f"{name} would race {dep}"
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name in ("producer", "processor-face", "gateway"):
        assert services[name]["depends_on"] == {
            "topics": {"condition": "service_completed_successfully"}}


def test_processor_face_can_scale(compose: Obj) -> None:
    face = compose["services"]["processor-face"]
    assert "container_name" not in face and "ports" not in face and "hostname" not in face
    assert compose_command(face) == ["process", "--kind", "face"]


def test_services_listen_where_compose_looks(compose: Obj) -> None:
    services = compose["services"]
    processor = settings_of(compose, "processor-face")
    assert processor["kind"] == "face"
    assert processor["web_port"] == ProcessorSettings.model_fields["web_port"].default
    assert urlparse(health_url(services["processor-face"])).port == processor["web_port"]
    assert urlparse(health_url(services["processor-face"])).path == "/healthz"
    assert [int(p) for p in services["processor-face"]["expose"]] == [processor["web_port"]]

    gateway = settings_of(compose, "gateway")
    assert gateway["host"] == "0.0.0.0"
    assert gateway["port"] == GatewaySettings.model_fields["port"].default
    assert services["gateway"]["ports"] == [
        f"${{EVI_PUBLISH_ADDR:-127.0.0.1}}:${{EVI_GATEWAY_PORT:-8000}}:{gateway['port']}"]
    assert urlparse(health_url(services["gateway"])).port == gateway["port"]
    assert urlparse(health_url(services["gateway"])).path == "/readyz"

    producer = settings_of(compose, "producer")
    assert producer["metrics_port"] == 9101
    assert urlparse(health_url(services["producer"])).port == producer["metrics_port"]
    (stream,) = producer["streams"]
    assert (stream["source"], stream["id"], stream["kinds"], stream["loop"]) == (
        "sample:", "sample-1", list(default_models()), True)  # every kind: one encode, N topics
    # EVI_SAMPLE_STREAMS=12: twelve sample streams, still one producer process.
    args = compose_command(services["producer"], {"EVI_SAMPLE_STREAMS": "12"})
    many = effective_settings(args, image_env() | compose_env(services["producer"]))
    assert [s["id"] for s in many["streams"]] == [f"sample-{i}" for i in range(1, 13)]
    # The sample plays in real time, as a camera: the processor stays live (docs/scaling.md).
    assert processor["policy"] == "drop-stale"


def test_topics_service_creates_the_processors_topics(compose: Obj) -> None:
    service = compose["services"]["topics"]
    specs = topics_created(compose_command(service), image_env() | compose_env(service))
    processor = settings_of(compose, "processor-face")
    from evi.topics import Topics

    topics = Topics(TopicSettings(**processor["topics"]))
    names = {s.name: s.partitions for s in specs}
    assert names[topics.frames("face")] == processor["topics"]["frame_partitions"]


def test_env_names_are_settings_fields(compose: Obj) -> None:
    from tests.deploy.test_k8s_wiring import SETTINGS, field_exists

    role = {"topics": "topics", "producer": "producer", "processor-face": "processor",
            "gateway": "gateway"}
    for name in EVI_SERVICES:
        model = SETTINGS[role[name]]
        for var in compose_env(compose["services"][name]):
            assert var.startswith("EVI_")
            assert field_exists(model, var.removeprefix("EVI_").lower().split("__")), (name, var)


def test_monitoring_is_an_optional_profile(compose: Obj) -> None:
    services = compose["services"]
    for name, service in services.items():
        expected = ["monitoring"] if name in ("prometheus", "grafana") else None
        assert service.get("profiles") == expected, name


def test_prometheus_scrapes_every_service(compose: Obj) -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets: set[tuple[str, int]] = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for t in static["targets"]:
                host, port = t.rsplit(":", 1)
                targets.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            assert dns["type"] == "A"
            targets |= {(n, dns["port"]) for n in dns["names"]}
    gateway = settings_of(compose, "gateway")
    assert ("gateway", gateway["metrics_port"]) in targets, "the gateway's own metrics port"
    assert ("gateway", gateway["port"]) not in targets, "/metrics is not on the API's port"
    assert [int(p) for p in compose["services"]["gateway"]["expose"]] == [gateway["metrics_port"]]
    assert ("processor-face", settings_of(compose, "processor-face")["web_port"]) in targets
    assert ("producer", settings_of(compose, "producer")["metrics_port"]) in targets
    # Kafka's own metrics: the JMX exporter agent's port, exposed to the compose network only.
    assert ("kafka", 9404) in targets and "9404" in compose["services"]["kafka"]["expose"]
    scaled = {n for j in config["scrape_configs"] for d in j.get("dns_sd_configs", [])
              for n in d["names"]}
    assert "processor-face" in scaled, "a scaled service needs DNS discovery (one A per replica)"
    for host, _ in targets:
        assert host in compose["services"] or host == "localhost", host
    mounted = [v for v in compose["services"]["prometheus"]["volumes"]
               if v.startswith("./deploy/prometheus:")]
    assert mounted, "the whole deploy/prometheus folder is mounted (rules.yml too)"
    for rules in config["rule_files"]:
        assert (REPO / "deploy" / "prometheus" / Path(rules).name).is_file()


def test_grafana_is_provisioned(compose: Obj) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"]
                  if v.startswith("./"))
    provisioning = REPO / "deploy" / "grafana" / "provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (ds,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"]
    url = urlparse(ds["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    assert compose["services"]["prometheus"]["ports"] == [
        "${EVI_PUBLISH_ADDR:-127.0.0.1}:${EVI_PROMETHEUS_PORT:-9090}:9090"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "evi.yml").read_text())[
        "providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    home = compose_env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (REPO / "deploy" / "grafana" / "dashboards" / Path(home).name).is_file()
    dashboard_file = REPO / "deploy" / "grafana" / "dashboards" / "evi.json"
    dashboard: Any = json.loads(dashboard_file.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {ds["uid"]}


def test_images_name_no_registry_host(compose: Obj) -> None:
    for name, service in compose["services"].items():
        first = service["image"].split("/")[0]
        assert "/" not in service["image"] or not re.search(r"[.:]|^localhost$", first), name


def test_gateway_token_comes_from_dot_env(compose: Obj) -> None:
    """Never a literal: compose interpolates it from .env (`make env`) and refuses to start
    without it (`:?`), naming the fix."""
    from tests.deploy.test_docker import dockerignore, ignored

    token = compose_env(compose["services"]["gateway"])["EVI_AUTH_TOKEN"]
    assert re.fullmatch(r"\$\{EVI_AUTH_TOKEN:\?[^}]*make env[^}]*\}", token), token
    for name, service in compose["services"].items():
        if name != "gateway":
            assert "EVI_AUTH_TOKEN" not in compose_env(service), name
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^env: \.env$", makefile, re.M) and "openssl rand -hex 32" in makefile
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()
    assert ignored(".env", dockerignore()), "the token must not reach the image"


def test_images_are_exact_versions(compose: Obj) -> None:
    """Ours is built here (evi:local); every other image is a release, never `latest`."""
    for name, service in compose["services"].items():
        image = service["image"]
        if image == "evi:local":
            assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile", name
            continue
        if name == "gateway":  # the same Dockerfile's slimmer target
            assert image == "evi-gateway:local"
            assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
            assert service["build"]["target"] == "gateway"
            continue
        if name == "kafka":
            assert image == f"evi-kafka:{pom_kafka_version()}"  # built: see above
            continue
        assert "build" not in service, name
        assert re.fullmatch(r"[a-z0-9./-]+(:v?\d+\.\d+\.\d+)?(@sha256:[0-9a-f]{64})?", image), image
        assert re.search(r":v?\d+\.\d+\.\d+|@sha256:", image), f"{name}: {image} is not exact"
