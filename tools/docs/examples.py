#!/usr/bin/env python3
"""Keeps the command examples in the docs true: runs them against a real daemon and either
checks that the docs show what the commands print (--check, a ctest) or writes their output
into the docs (--write).

An example is a fenced block right after the marker line

    <!-- example: checked by tools/docs/examples.py -->

in README.md or docs/*.md. In the block, a line starting with "$ " is a command; the lines
after it, up to the next command or the end of the block, are what it prints (stdout and
stderr together). The commands of one block run in one bash session from the repository root,
so an `export` holds for the rest of the block.

The daemon is build/sparkd on a copy of the repository's config.toml (the real
all-MiniLM-L6-v2 from .deps/ and the two demo models), with its own socket and metrics port.
Commands are written as users run them from a checkout (the socket is build/sparkd.sock); the
script points them at its own socket, and shows its output the same way: the socket as
build/sparkd.sock and the checkout's path as $PWD.

--check compares after masking what differs from run to run and machine to machine: times,
rates and memory figures, floats to 4 or more decimals (embeddings and scores differ in their
last digits between CPUs), pids and uids.

    tools/docs/examples.py --check [--build-dir build]
    tools/docs/examples.py --write [--build-dir build]
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- example: checked by tools/docs/examples.py -->"
DOC_FILES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
DOC_SOCKET = "build/sparkd.sock"
DOC_HTTP_ADDRESS = "127.0.0.1:8000"

# What changes between runs and machines, masked before comparing.
VOLATILE = [
    # A number with a unit of time, rate or size: "12.5 ms", "0.15 s", "812.4 tok/s", "86.6 MiB".
    (re.compile(r"\d+(\.\d+)?(\s?)(ms|s|tok/s|GB/s|MB|GB|B|KiB|MiB|GiB|TiB|%)(?![\w/])"),
     r"#\2\3"),
    # Timing and memory members of --json output.
    (re.compile(r'"(queue_ms|tokenize_ms|compute_ms|total_ms|ttft_ms|uptime_s|'
                r'mem_available_bytes|memory_pressure_some_avg10)":\s*"?[-\d.e+]+"?'),
     r'"\1":#'),
    (re.compile(r"-?\d+\.\d{4,}(e[-+]?\d+)?"), "#.####"),
    # HTTP answers: ids, times and durations of the moment.
    (re.compile(r'"id":\s*"(chatcmpl|cmpl|rerank)-[0-9a-f]+"'), r'"id": "\1-#"'),
    (re.compile(r'"(created|created_at|modified_at|total_duration|load_duration|'
                r'prompt_eval_duration|eval_duration)":\s*("[^"]*"|\d+)'), r'"\1": #'),
    (re.compile(r"\b(pid|uid) \d+"), r"\1 #"),
]


def normalize(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


class Example:
    """One block: where it is, and its commands with the output the doc shows."""

    def __init__(self, path: Path, first_line: int, lines: List[str]) -> None:
        self.path = path
        self.first_line = first_line  # index of the first line inside the fence
        self.commands: List[Tuple[str, List[str]]] = []
        for line in lines:
            if line.startswith("$ "):
                self.commands.append((line[2:], []))
            elif self.commands:
                self.commands[-1][1].append(line)
            elif line.strip():
                raise SystemExit(f"{path}:{first_line + 1}: an example starts with a $ command")

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.first_line}"


def find_examples(path: Path) -> List[Tuple[int, int, Example]]:
    """(first, end) line indexes of each example's body, and the example."""
    lines = path.read_text().split("\n")
    found = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER:
            if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
                raise SystemExit(f"{path}:{i + 1}: the marker must be followed by a ``` fence")
            end = i + 2
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            found.append((i + 2, end, Example(path, i + 2, lines[i + 2:end])))
            i = end
        i += 1
    return found


class Daemon:
    """build/sparkd on a copy of config.toml with its own socket and metrics port."""

    def __init__(self, build_dir: Path, work: Path) -> None:
        self.socket = str(work / "sparkd.sock")
        config = (REPO / "config.toml").read_text()
        config = re.sub(r'(?m)^socket = ".*"$', f'socket = "{self.socket}"', config)
        config = re.sub(r'(?m)^listen = ".*"$', 'listen = "127.0.0.1:0"', config)
        config = re.sub(r'(?m)^listen = \[.*\]$', 'listen = ["127.0.0.1:0"]', config)
        # Model paths are relative to config.toml's folder, the repository root.
        config = re.sub(r'(?m)^path = "(?!/)(.*)"$', lambda m: f'path = "{REPO / m.group(1)}"',
                        config)
        config_path = work / "config.toml"
        config_path.write_text(config)
        self.log_path = work / "sparkd.log"
        self.process = subprocess.Popen(
            [str(build_dir / "sparkd"), "--config", str(config_path)],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while "serving on" not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start:\n{self.log()}")
            time.sleep(0.05)
        # The docs show the HTTP front end on config.toml's 127.0.0.1:8000.
        match = re.search(r"HTTP \(OpenAI, Ollama\) on http://127\.0\.0\.1:(\d+)", self.log())
        self.http_address = f"127.0.0.1:{match.group(1)}" if match else None

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_example(example: Example, daemon: Daemon, build_dir: Path) -> List[List[str]]:
    """The output of each command of `example`, as the doc would show it."""
    separator = "@@sparkd-docs-example@@"
    script = ["set +e"]
    for command, _ in example.commands:
        script.append(f"echo '{separator}'")
        command = command.replace(DOC_SOCKET, daemon.socket)
        if daemon.http_address:
            command = command.replace(DOC_HTTP_ADDRESS, daemon.http_address)
        script.append("{ " + command + "\n} 2>&1")

    env = dict(os.environ)
    env["PATH"] = f"{build_dir}:{env['PATH']}"
    env.pop("SPARKD_SOCKET", None)
    env["COLUMNS"] = "100"
    run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    text = run.stdout.replace(daemon.socket, DOC_SOCKET).replace(str(REPO), "$PWD")
    if daemon.http_address:
        text = text.replace(daemon.http_address, DOC_HTTP_ADDRESS)
    outputs = text.split(separator + "\n")[1:]
    if len(outputs) != len(example.commands):
        raise SystemExit(f"{example.where()}: expected {len(example.commands)} outputs, got "
                         f"{len(outputs)}:\n{run.stdout}\n{run.stderr}")
    return [output.rstrip("\n").split("\n") if output.strip() else [] for output in outputs]


def expected_lines(example: Example, index: int) -> List[str]:
    shown = list(example.commands[index][1])
    while shown and not shown[-1].strip():  # a blank line separates commands in the docs
        shown.pop()
    return shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="fail if a doc shows other output")
    mode.add_argument("--write", action="store_true", help="write the real output into the docs")
    parser.add_argument("--build-dir", default=str(REPO / "build"))
    args = parser.parse_args()
    build_dir = Path(args.build_dir).resolve()

    documents = {path: find_examples(path) for path in DOC_FILES if path.exists()}
    if not any(documents.values()):
        raise SystemExit("no examples found: is the marker spelled right?")
    work = Path(tempfile.mkdtemp(prefix="sparkd-docs-"))
    daemon = Daemon(build_dir, work)
    failures = 0
    try:
        for path, examples in documents.items():
            lines = path.read_text().split("\n")
            for first, end, example in reversed(examples):  # rewrite from the end up
                outputs = run_example(example, daemon, build_dir)
                body: List[str] = []
                for index, (command, _) in enumerate(example.commands):
                    shown = expected_lines(example, index)
                    if args.check and normalize("\n".join(shown)) != normalize(
                            "\n".join(outputs[index])):
                        failures += 1
                        diff = difflib.unified_diff(shown, outputs[index], "the doc shows",
                                                    "the command printed", lineterm="")
                        print(f"{example.where()}: $ {command}\n" + "\n".join(diff) + "\n")
                    if body:
                        body.append("")
                    body.append(f"$ {command}")
                    body.extend(outputs[index])
                lines[first:end] = body
            if args.write:
                path.write_text("\n".join(lines))
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    total = sum(len(examples) for examples in documents.values())
    if args.check:
        print(f"{total} examples checked, {failures} command(s) differ"
              + ("; run tools/docs/examples.py --write and review the diff" if failures else ""))
    else:
        print(f"{total} examples written")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
