"""The compose deployment: every service is wired as the README says, and every command
it runs is one this docintel has (checked with the real CLI, not by reading)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_long_running_services_restart_wait_for_their_dependencies_and_report_health(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("api", "beat", "cpu-worker"):
        service = services[name]
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
        needs = service["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}, name
        assert needs["postgres"] == {"condition": "service_healthy"}, name
        assert needs["redis"] == {"condition": "service_healthy"}, name
        for dependency in needs:
            assert dependency in services, (name, dependency)
    # The inbox is readable where scans run: the beat sends them, workers run them.
    sources = services["beat"]["environment"]["DOCINTEL_SOURCES"]
    assert '"uri": "/inbox"' in sources
    assert "./inbox:/inbox" in services["cpu-worker"]["volumes"]


def test_images_build_from_the_workers_dockerfiles(compose: dict[str, Any]) -> None:
    built = [s for s in compose["services"].values() if "build" in s]
    assert len(built) >= 6
    for service in built:
        dockerfile = ROOT / service["build"]["dockerfile"]
        assert dockerfile.parent == ROOT / "workers" and dockerfile.is_file()
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY ") and "--from" not in line:
                for source in line.split()[1:-1]:
                    assert (ROOT / source).exists(), (dockerfile.name, source)


def test_every_docintel_command_in_the_compose_file_exists(compose: dict[str, Any]) -> None:
    commands = []
    for name, service in compose["services"].items():
        command = service.get("command")
        if isinstance(command, list) and command[:1] == ["docintel"]:
            commands.append((name, command[1:]))
        health = service.get("healthcheck", {}).get("test", [])
        if health[:2] == ["CMD", "docintel"]:
            commands.append((f"{name} health", health[2:]))
    assert {name for name, _ in commands} >= {"migrate", "api", "beat", "beat health"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    for name, args in commands:
        # --help after the real arguments: click parses them all first, so a renamed
        # command or option fails here, and nothing is started.
        result = subprocess.run(
            [sys.executable, "-m", "docintel", *args, "--help"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (name, args, result.stderr)
