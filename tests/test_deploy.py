"""deploy/ is checked against the app: probes hit real routes, env names are real settings."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from starlette.routing import Route, WebSocketRoute

from bridge.config import load_settings
from bridge.gemini.endpoint import endpoint_from_settings
from bridge.observability.metrics import BridgeMetrics
from bridge.runtime.services import Services
from bridge.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def app_paths() -> set[str]:
    env = {
        "PUBLIC_URL": "https://x.example.com",
        "TWILIO_AUTH_TOKEN": "twilio-auth-token-123",
        "GEMINI_API_KEY": "gemini-key-for-tests",
    }
    settings = load_settings(env, env_file=None)
    app = create_app(Services.build(settings, endpoint_from_settings(settings)))
    return {r.path for r in app.routes if isinstance(r, Route | WebSocketRoute)}


def known_settings() -> set[str]:
    return set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))


def test_every_manifest_parses_and_the_set_is_complete() -> None:
    docs = manifests()
    assert set(docs) == {
        "Deployment",
        "Service",
        "Ingress",
        "Secret",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    }
    names = {doc["metadata"]["name"] for doc in docs.values()}
    assert names == {"gemini-phone-bridge"}


def test_deployment_probes_ports_env_and_grace_match_the_app() -> None:
    docs = manifests()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    paths = app_paths()
    assert container["livenessProbe"]["httpGet"]["path"] == "/health" in paths
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready" in paths
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["port"] in port_names
    assert port_names["http"] == 8080
    env = {e["name"]: e.get("value") for e in container["env"]}
    settings = known_settings()
    assert set(env) <= settings
    secret = docs["Secret"]["stringData"]
    assert set(secret) <= settings and "TWILIO_AUTH_TOKEN" in secret
    # Nothing account-specific is written into the Deployment itself.
    assert not {"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "GEMINI_API_KEY"} & set(env)
    assert "TWILIO_ACCOUNT_SID" in secret
    # Calls must be drained (DRAIN_TIMEOUT) and said goodbye to before the pod is killed.
    assert pod["terminationGracePeriodSeconds"] > float(env["DRAIN_TIMEOUT"]) + 30
    assert "SIGTERM" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert pod["securityContext"]["runAsNonRoot"] is True


def redis_manifests() -> dict[str, dict]:
    path = DEPLOY / "k8s" / "redis" / "redis.yaml"
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text())}


def test_a_rolling_update_hands_calls_to_a_pod_that_is_already_serving() -> None:
    deployment = manifests()["Deployment"]["spec"]
    assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    (container,) = deployment["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["INSTANCE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # The grace period covers a hand-over (at most HAND_OVER_WAIT_S) with room to spare.
    from bridge.runtime.services import HAND_OVER_WAIT_S

    assert deployment["template"]["spec"]["terminationGracePeriodSeconds"] > HAND_OVER_WAIT_S + 30
    secret = manifests()["Secret"]["stringData"]
    service = redis_manifests()["Service"]
    assert urlsplit(secret["STATE_URL"]).hostname == service["metadata"]["name"]
    assert urlsplit(secret["STATE_URL"]).port == service["spec"]["ports"][0]["port"]


def test_the_in_cluster_redis_is_private_and_forgets_nothing_it_must_keep() -> None:
    docs = redis_manifests()
    assert set(docs) == {"Secret", "Deployment", "Service", "NetworkPolicy"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--maxmemory-policy"] == "noeviction"  # never drop a spent token
    assert options["--requirepass"] == "$(REDIS_PASSWORD)"
    assert options["--save"] == "" and options["--appendonly"] == "no"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    policy = docs["NetworkPolicy"]["spec"]
    (inbound,) = policy["ingress"]
    bridge = manifests()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert inbound["from"][0]["podSelector"]["matchLabels"].items() <= bridge.items()
    assert inbound["ports"] == [{"port": 6379, "protocol": "TCP"}]


def test_the_pod_runs_with_the_least_it_needs() -> None:
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False  # it never calls the Kubernetes API
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] != 0
    context = container["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"]} and "add" not in context["capabilities"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True


def test_the_network_policy_lets_in_the_ingress_and_out_dns_and_https_only() -> None:
    docs = manifests()
    policy = docs["NetworkPolicy"]["spec"]
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (inbound,) = policy["ingress"]
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in inbound["from"]
    }
    assert namespaces == {"ingress-nginx", "monitoring"}  # Twilio via the ingress; /metrics
    assert all("podSelector" in peer and "ipBlock" not in peer for peer in inbound["from"])
    assert inbound["ports"] == [{"port": "http", "protocol": "TCP"}]
    ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert ports == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6379, "TCP")}
    (to_redis,) = [r for r in policy["egress"] if r["ports"] == [{"port": 6379, "protocol": "TCP"}]]
    redis_labels = redis_manifests()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert to_redis["to"][0]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    (https,) = [r for r in policy["egress"] if r["ports"] == [{"port": 443, "protocol": "TCP"}]]
    blocks = {peer["ipBlock"]["cidr"]: set(peer["ipBlock"]["except"]) for peer in https["to"]}
    # Public addresses only: not the cluster, nor the cloud's metadata server.
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= blocks[
        "0.0.0.0/0"
    ]


def test_service_ingress_and_autoscaler_point_at_real_things() -> None:
    docs = manifests()
    paths = app_paths()
    ingress_paths = [
        p["path"] for rule in docs["Ingress"]["spec"]["rules"] for p in rule["http"]["paths"]
    ]
    assert set(ingress_paths) == {
        "/api/inbound-call", "/voice-stream", "/api/call-status", "/api/stream-ended",
        "/api/outbound-call", "/api/amd-status", "/api/recording-status",
    } <= paths  # fmt: skip
    assert "/api/calls" not in ingress_paths  # placing calls is the operator's
    # Twilio is told to call back at these: every one must reach the pod.
    env = {"PUBLIC_URL": "https://x.example.com", "TWILIO_AUTH_TOKEN": "twilio-auth-token-123"}
    settings = load_settings({**env, "GEMINI_API_KEY": "gemini-key-for-tests"}, env_file=None)
    for url in (settings.status_callback_url, settings.stream_url, settings.stream_ended_url(1)):
        assert urlsplit(url).path in ingress_paths
    annotations = docs["Ingress"]["metadata"]["annotations"]
    assert (
        int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    )  # an hour-long call
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    metric = docs["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    exported = BridgeMetrics().render().decode()
    assert f"# TYPE {metric} gauge" in exported


def test_prometheus_and_grafana_use_the_products_metrics() -> None:
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "scrape.yaml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics" in app_paths()
    assert job["authorization"]["type"] == "Bearer"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    exported = BridgeMetrics().render().decode()
    families = set(re.findall(r"^# TYPE (\S+) ", exported, re.M))
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b(bridge_[a-z_]+)", target["expr"]):
                base = re.sub(r"_(total|bucket|sum|count)$", "", name)
                assert base in families or name in families, (panel["title"], name)


def test_dockerfile_runs_the_documented_command_as_non_root_with_a_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'CMD ["gemini-phone-bridge", "serve", "--host", "0.0.0.0", "--port", "8080"]' in text
    assert re.search(r"^USER bridge$", text, re.M)
    assert "HEALTHCHECK" in text and "/health" in text
    assert "FROM python:3.11-slim" in text


def test_dockerignore_keeps_the_venv_the_env_file_and_git_out_of_the_build_context() -> None:
    """What ``docker build .`` sends: the files .dockerignore lets through, as Docker reads
    it (patterns in order, the last match wins, ``!`` lets a path back in)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated, glob = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
            parts = path.split("/")
            hit = any(
                fnmatch.fnmatch("/".join(parts[:n]), glob.removeprefix("**/"))
                or (glob.startswith("**/") and fnmatch.fnmatch(parts[n - 1], glob[3:]))
                for n in range(1, len(parts) + 1)
            )
            if hit:
                keep = negated
        return keep

    for path in (".venv/bin/python", ".env", ".git/config", ".venv-3.13/x", "demo-call.wav"):
        assert not sent(path), path
    for path in (
        "pyproject.toml",
        "setup.py",
        "README.md",
        "bridge/web/app.py",
        "twiml/voice.toml",
        "bridge/web/pages/dashboard.html",
        "bridge/twilio/twiml_defaults/voice.toml",
    ):
        assert sent(path), path
    # Everything the Dockerfile copies is sent.
    copied = re.findall(r"^COPY (?!--from)(.+?) \S+$", (DEPLOY / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert sent(source), source
