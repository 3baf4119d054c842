"""The tour `donjon up` prints works as printed: every shell line it shows, run as shown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from harness import EXAMPLES, free_port, read_until_serving, start_up


def _shell_lines(lines: list[str]) -> list[str]:
    """The lines `up` prints for a shell: indented, after the banner (comments left out)."""
    return [
        ln.strip()
        for ln in lines
        if ln.startswith("  ") and ln.strip() and not ln.strip().startswith("#")
    ]


def test_every_line_of_the_tour_runs_as_printed(tmp_path: Path) -> None:
    """Each printed line (the key export, the URL export, each invoke and curl) succeeds."""
    data = tmp_path / "data"
    # `up` deploys ./examples by default, as a user runs it
    proc = start_up(data, free_port(), cwd=EXAMPLES.parent, new_session=True)
    try:
        lines = read_until_serving(proc)
        out = "".join(lines)
        assert "serving;" in out, out
        shell = _shell_lines(lines)
        exports = [ln for ln in shell if ln.startswith("export ")]
        commands = [ln for ln in shell if not ln.startswith("export ")]
        assert any("DONJON_API_KEY=" in ln for ln in exports), out
        assert any(ln.startswith("curl ") for ln in commands), out
        names = {p.name for p in EXAMPLES.iterdir() if (p / "donjon.yaml").is_file()}
        for name in names:
            assert any(name in ln or "/fn/" in ln for ln in commands), (name, out)
        # A user's shell: none of the test's DONJON_* settings, `donjon` on the PATH.
        user_env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
        user_env["PATH"] = f"{Path(sys.executable).parent}:{user_env.get('PATH', '')}"
        for command in commands:
            script = "set -eu\n" + "\n".join(exports) + "\n" + command + "\n"
            done = subprocess.run(
                ["/bin/bash", "-c", script],
                env=user_env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            answer = json.loads(done.stdout)
            assert isinstance(answer, dict), (command, done.stdout)
            assert "status" not in answer or answer["status"] < 400, (command, done.stdout)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
