"""deploy/: the systemd unit, the Containerfile and the Kubernetes manifests, parsed and checked."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.entry.cli import parser
from pipeline.testing import run_cli_here

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
REPO = DEPLOY.parent
UNIT = DEPLOY / "systemd" / "tunebus-collector.service"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
KUBE = DEPLOY / "kubernetes"


@pytest.fixture(scope="module")
def help_flags() -> dict[str, set[str]]:
    """The flags ``tunebus collect --help`` and ``tunebus status --help`` list."""
    flags = {}
    for command in ("collect", "status"):
        done = run_cli_here(command, "--help")
        assert done.returncode == 0, done.stderr
        text = done.stdout
        flags[command] = set(re.findall(r"--[a-z][a-z0-9-]*", text))
    return flags


def check_command(argv: list[str], help_flags: dict[str, set[str]]) -> dict[str, Any]:
    """``argv`` is ``tunebus <collect|status> ...`` with only listed flags; returns what it parses to."""
    assert Path(argv[0]).name == "tunebus", argv
    command, args = argv[1], argv[2:]
    used = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    assert used <= help_flags[command], f"not in tunebus {command} --help: {used - help_flags[command]}"
    return vars(parser().parse_args([command, *args]))


def _unit_sections(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif line and not line.startswith("#"):
            key, value = line.split("=", 1)
            current[key] = value
    return sections


def test_systemd_unit_stops_on_sigterm_in_bounded_time_and_restarts_on_failure(
        help_flags: dict[str, set[str]]) -> None:
    """Type simple, SIGTERM, a finite stop timeout, restart on failure, an ExecStart that parses."""
    service = _unit_sections(UNIT.read_text())["Service"]
    assert service["Type"] in ("simple", "notify")
    assert service["KillSignal"] == "SIGTERM"
    assert 0 < int(service["TimeoutStopSec"]) <= 600
    assert service["Restart"] == "on-failure"
    args = check_command(shlex.split(service["ExecStart"]), help_flags)
    assert args["bind"].startswith("tcp://") and str(args["out"]).startswith("/var/lib/tunebus")
    assert "WantedBy" in _unit_sections(UNIT.read_text())["Install"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say (with ExecStart pointed at this venv's tunebus)."""
    tunebus = Path(sys.executable).parent / "tunebus"
    if not tunebus.exists():
        pytest.skip("the tunebus script is not installed in this venv")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/tunebus/venv/bin/tunebus", str(tunebus)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and str(unit) not in done.stderr, done.stderr


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip() for line in joined.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_containerfile_runs_tunebus_collect_with_listed_flags(help_flags: dict[str, set[str]]) -> None:
    """ENTRYPOINT + CMD and the HEALTHCHECK are valid tunebus commands; every COPY source exists."""
    steps = _instructions(CONTAINERFILE.read_text())
    kinds = [k for k, _ in steps]
    assert kinds[0] == "FROM" and "USER" in kinds and ("STOPSIGNAL", "SIGTERM") in steps
    found = dict(steps)
    argv = json.loads(found["ENTRYPOINT"]) + json.loads(found["CMD"])
    args = check_command(argv, help_flags)
    assert str(args["out"]) == "/data" and args["metrics_port"] is not None
    health = found["HEALTHCHECK"].split(" CMD ", 1)[1]
    check_command(json.loads(health), help_flags)
    for _, copy in (s for s in steps if s[0] == "COPY"):
        for source in copy.split()[:-1]:
            assert (REPO / source).exists(), source
    exposed = {int(p) for p in found["EXPOSE"].split()}
    assert {5555, args["metrics_port"]} <= exposed
    # Whoever reaches the status socket can stop the collector: it stays on loopback.
    assert args["status_bind"].startswith("tcp://127.0.0.1:") and 5556 not in exposed


def _manifests() -> dict[str, dict[str, Any]]:
    docs = [d for f in sorted(KUBE.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_kubernetes_collector_deployment_service_and_claim_fit_together(
        help_flags: dict[str, set[str]]) -> None:
    """One Recreate replica runs a valid tunebus collect writing into the claim the Service fronts."""
    kinds = _manifests()
    claim, deployment, service = (kinds["PersistentVolumeClaim"], kinds["Deployment"], kinds["Service"])
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    args = check_command(container["command"] + container["args"], help_flags)
    for probe in ("readinessProbe", "livenessProbe"):
        check_command(container[probe]["exec"]["command"], help_flags)
    mount = container["volumeMounts"][0]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert str(args["out"]).startswith(mount["mountPath"])
    assert pod["terminationGracePeriodSeconds"] >= 30
    labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(container_ports)
    assert args["bind"].endswith(f":{container_ports['bus']}")
    assert args["metrics_port"] == container_ports["metrics"]
    assert args["status_bind"].startswith("tcp://127.0.0.1:") and "status" not in container_ports
    secrets = _secret_mounts(pod, container)
    key, clients = Path(args["curve_secret_key"]), Path(args["curve_clients"])
    assert secrets[str(key.parent)] != secrets[str(clients)]  # the secret key never sits with the clients'
    assert pod["volumes"][[v["name"] for v in pod["volumes"]].index("collector-curve")]["secret"][
        "defaultMode"] == 0o400


def _secret_mounts(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """Mount path -> Secret name, for every Secret volume the container mounts."""
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    return {m["mountPath"]: secrets[m["name"]] for m in container["volumeMounts"] if m["name"] in secrets}


def test_kuberay_head_mounts_the_results_claim_and_points_at_the_service() -> None:
    """The RayCluster head sees --out at the same path and gets the collector's Service address."""
    kinds = _manifests()
    cluster, deployment, service = kinds["RayCluster"], kinds["Deployment"], kinds["Service"]
    assert cluster["apiVersion"] == "ray.io/v1"
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    (container,) = head["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    bus_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "bus")
    assert env["TUNEBUS_ADDRESS"] == f"tcp://{service['metadata']['name']}:{bus_port}"
    collector = deployment["spec"]["template"]["spec"]["containers"][0]
    out = collector["args"][collector["args"].index("--out") + 1]
    assert env["TUNEBUS_STORAGE"] == out
    claim = kinds["PersistentVolumeClaim"]["metadata"]["name"]
    mount = next(m for m in container["volumeMounts"]
                 if any(v["name"] == m["name"] and v["persistentVolumeClaim"]["claimName"] == claim
                        for v in head["volumes"]))
    assert mount["mountPath"] == collector["volumeMounts"][0]["mountPath"]
    assert "ReadWriteMany" in kinds["PersistentVolumeClaim"]["spec"]["accessModes"]
    driver_keys = _secret_mounts(head, container)
    for name in ("TUNEBUS_CURVE_SECRET_KEY", "TUNEBUS_CURVE_SERVER_KEY"):
        assert str(Path(env[name]).parent) in driver_keys, f"{name} is not in a mounted Secret"
    pod = deployment["spec"]["template"]["spec"]
    assert set(driver_keys.values()).isdisjoint(_secret_mounts(pod, collector).values())
