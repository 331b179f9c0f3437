"""README.md's examples, run against a real ``triarb up --demo`` started for this module, so they cannot drift.

Every fenced block of the README is one of: a transcript (a line starting with ``$ `` is a command, the lines
under it are what it prints), an ``sh`` block (each line runs and exits 0, or is in ``SKIPPED`` with the
reason), the ``up`` banner and the ``tail`` samples (checked against what those commands print), the command
summary (against ``triarb --help``), the TOML example (against ``triarb config``), or in ``NOT_EXAMPLES``.
A block that is none of these fails ``test_every_readme_block_is_checked_or_listed``.

Commands run from the repo root as written, with these substitutions only: ``.venv/bin/triarb`` becomes this
interpreter's ``-m triarb.cli``; ports 9464 and 8000 become the test stack's service and dashboard ports;
``--out var/`` writes into a temp dir; ``triarb redis-cli`` gets ``--no-raw`` (the format it prints on a
terminal, which the README shows).

Matching rule, a documented line against a printed line (each stripped of leading and trailing blanks):

- a line that is only ``...`` stands for any number of printed lines (none included); ``...`` inside a line
  stands for any text within that line;
- volatile values match any value of their kind: a stream id (``1795500000123-0``) any ``N-N``, a clock time
  (``03:52:11.814``) any ``HH:MM:SS.mmm``, a number any number written with the same sign (``+129.20`` any
  ``+N[.N]``, ``6390`` any unsigned one); digits inside a word (``e2e``) and IPv4 addresses stay exact;
- a run of blanks matches any run of blanks;
- everything else is exact: words, names, quotes, punctuation. So ``4) "demo"`` fails where the entry says
  ``4) "coinbase"``, and an error line must be the server's own wording.

A transcript's lines must match the command's whole output, in order. A transcript command with no lines
under it must exit 0 and answer something: not nothing, ``(empty array)``, ``(nil)`` or an ``(error)``.
An sh line must exit 0, and what its comment claims is checked too: an HTTP status ``(202)`` on a curl line,
``N checksums ok, M fail`` against the replay summary, and the file an ``--out`` names must be written.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_cli_stack import Stack, clean_env, interrupt, start_stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
FIXTURES = REPO.parent / "shared" / "fixtures"  # the README's ../shared/fixtures
TOKEN = "readme-example-token"

# sh lines that are not run; each key must be a command (comment excluded) of some README sh line.
SKIPPED = {
    "make demo": "runs the stack until Ctrl-C; this module starts its own `triarb up --demo`",
    "make test": "is the suite this test belongs to",
    "make bench-detector": "a benchmark (minutes of work) with no documented output to check",
    "make bench-e2e": "a benchmark (minutes of work) with no documented output to check",
    "make bench-books": "a benchmark (minutes of work) with no documented output to check",
    "WS_CAPTURE=true .venv/bin/triarb up": "starts a second stack, on the live venues, that runs until Ctrl-C",
}
# Fenced blocks that are not examples, by the start of their first line.
NOT_EXAMPLES = {
    "Coinbase WS": "the architecture diagram: a picture, nothing to run",
    "cp .env.example .env": "docker compose: no Docker engine here; test_compose_processes.py runs what compose would",
}
EMPTY_ANSWERS = {"", "(empty array)", "(nil)", "(empty list or set)"}


# --- the README, parsed ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """One fenced block: its language tag, its first line's number in README.md and its lines."""

    lang: str
    line_no: int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """A command from the README (continuation lines joined), its ``# comment`` and documented output."""

    command: str
    comment: str = ""
    output: tuple[str, ...] = ()


def fenced_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    at = 0
    while at < len(lines):
        if lines[at].startswith("```"):
            end = next(i for i in range(at + 1, len(lines)) if lines[i].startswith("```"))
            blocks.append(Block(lines[at][3:].strip(), at + 1, tuple(lines[at + 1:end])))
            at = end
        at += 1
    return blocks


def split_comment(line: str) -> tuple[str, str]:
    """``make demo    # installs ...`` → (``make demo``, ``installs ...``)."""
    match = re.search(r"\s+#\s+(.*)$", line)
    return (line[:match.start()].strip(), match[1].strip()) if match else (line.strip(), "")


def is_transcript(block: Block) -> bool:
    return any(line.startswith("$ ") for line in block.lines)


def transcript_steps(block: Block) -> list[Step]:
    steps: list[Step] = []
    for line in block.lines:
        if line.startswith("$ "):
            steps.append(Step(*split_comment(line[2:])))
        else:
            steps[-1] = Step(steps[-1].command, steps[-1].comment, (*steps[-1].output, line))
    return steps


def sh_steps(block: Block) -> list[Step]:
    """One step per logical line: a line ending in ``\\`` continues on the next."""
    logical: list[str] = []
    pending = ""
    for line in block.lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].rstrip() + " "
        elif line.strip():
            logical.append(pending + line.strip())
            pending = ""
    return [Step(*split_comment(line)) for line in logical]


def not_an_example(block: Block) -> bool:
    return bool(block.lines) and any(block.lines[0].strip().startswith(prefix) for prefix in NOT_EXAMPLES)


TAIL_LINE = re.compile(r"\d+-\d+\s+\d{2}:\d{2}:\d{2}\.\d{3}\s+\S+\s")
ALL_BLOCKS = fenced_blocks(README)
BLOCKS = [block for block in ALL_BLOCKS if not not_an_example(block)]  # what the tests below check
TRANSCRIPT_STEPS = [step for block in BLOCKS if is_transcript(block) for step in transcript_steps(block)]
SH_STEPS = [step for block in BLOCKS if block.lang == "sh" for step in sh_steps(block)]
BANNERS = [block for block in BLOCKS if block.lines and block.lines[0].startswith("triarb is up:")]
TAIL_SAMPLES = [block for block in BLOCKS if block.lines and all(TAIL_LINE.match(line) for line in block.lines)]
COMMAND_SUMMARIES = [block for block in BLOCKS if not block.lang and block not in BANNERS
                     and block.lines and block.lines[0].startswith("triarb ")]
TOML_EXAMPLES = [block for block in BLOCKS if block.lang == "toml"]
# `curl -s localhost:9464/healthz` answers `{...}` in the prose (outside fenced blocks)
PROSE = re.sub(r"^```.*?^```", "", README, flags=re.DOTALL | re.MULTILINE)
INLINE_CURLS = [Step(command, "", (answer,) if answer else ())
                for command, answer in re.findall(r"`(curl -s [^`]+)`(?: answers `([^`]+)`)?", PROSE)]


# --- the matching rule ----------------------------------------------------------------------------------------

TOKENS = re.compile(
    r"(?P<anything>\.\.\.)"
    r"|(?P<ipv4>(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]))"
    r"|(?P<stream_id>(?<![\w.])\d+-\d+(?![\w.]))"
    r"|(?P<clock>(?<![\w.])\d{2}:\d{2}:\d{2}\.\d{3}(?![\w.]))"
    r"|(?P<number>(?<![\w.])[+-]?\d+(?:\.\d+)?(?!\w))"
    r"|(?P<blanks>\s+)"
)
UNSIGNED_NUMBER = r"\d+(?:\.\d+)?(?:e[+-]?\d+)?"


def line_regex(documented: str) -> str:
    """The regex of one documented line under the module docstring's rule; it never crosses a newline."""
    parts: list[str] = []
    at = 0
    for token in TOKENS.finditer(documented):
        parts.append(re.escape(documented[at:token.start()]))
        kind, text = token.lastgroup, token[0]
        if kind == "anything":
            parts.append(r"[^\n]*?")
        elif kind == "ipv4":
            parts.append(re.escape(text))
        elif kind == "stream_id":
            parts.append(r"\d+-\d+")
        elif kind == "clock":
            parts.append(r"\d{2}:\d{2}:\d{2}\.\d{3}")
        elif kind == "number":
            parts.append(re.escape(text[0]) + UNSIGNED_NUMBER if text[0] in "+-" else UNSIGNED_NUMBER)
        else:
            parts.append(r"[ \t]+")
        at = token.end()
    parts.append(re.escape(documented[at:]))
    return "".join(parts)


def matches_line(documented: str, printed: str) -> bool:
    return re.fullmatch(line_regex(documented.strip()), printed.strip()) is not None


def matches_output(documented: tuple[str, ...], printed: str) -> bool:
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line.strip() == "..." else r"[ \t]*" + line_regex(line.strip()) + r"[ \t]*\n"
        for line in documented
    )
    printed_lines = "".join(line.rstrip() + "\n" for line in printed.rstrip("\n").splitlines())
    return re.fullmatch(pattern, printed_lines) is not None


def test_the_matching_rule_rejects_the_drift_it_exists_to_catch() -> None:
    exchange = ('       3) "exchange"', '       4) "coinbase"')
    assert matches_output(('3) "exchange"', '4) "coinbase"'), "\n".join(exchange))
    assert not matches_output(('3) "exchange"', '4) "demo"'), "\n".join(exchange))
    redis_70 = "(error) NOPERM this user has no permissions to run the 'xadd' command"
    assert not matches_line("(error) NOPERM User dashboard has no permissions to run the 'xadd' command", redis_70)
    assert matches_line("1795500000123-0   03:52:11.814  md.snapshot  kraken ETH-USD  bid 2999.7 x 1.2",
                        "1796038234148-1   11:30:34.148  md.snapshot  kraken ETH-USD  bid 3001.25 x 0.256021")
    assert not matches_line("net +129.20 bps", "net -12.5 bps")
    assert not matches_line("on 127.0.0.1:6390", "on 0.0.0.0:6390")
    assert matches_output(("a", "...", "z"), "a\nz") and matches_output(("a", "...", "z"), "a\nb\nc\nz")
    assert not matches_output(("a", "b"), "a\nb\nc")  # the whole output, unless a `...` line says otherwise


# --- the stack ------------------------------------------------------------------------------------------------

@dataclass
class DemoStack:
    stack: Stack
    banner: list[str]
    dashboard_port: int
    env: dict[str, str]
    out_dir: Path

    def runnable(self, command: str) -> str:
        """The README command with the module docstring's substitutions applied."""
        command = command.replace(".venv/bin/triarb", f"{shlex.quote(sys.executable)} -m triarb.cli")
        command = re.sub(r"\b(localhost|127\.0\.0\.1):9464\b", rf"\g<1>:{self.stack.service_port}", command)
        command = re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", rf"\g<1>:{self.dashboard_port}", command)
        command = command.replace("--out var/", f"--out {self.out_dir}/")
        return re.sub(r"(triarb\.cli redis-cli(?: --as[ =]\S+)?)", r"\1 --no-raw", command)

    def run(self, command: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", self.runnable(command)], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    workdir = tmp_path_factory.mktemp("readme")
    # `up` reads ./triarb.toml: a dashboard token, so the README's POST can run. The commands get the same file
    # as TRIARB_CONFIG, so a developer's ./triarb.toml in the repo root cannot change what they see.
    config = workdir / "triarb.toml"
    config.write_text(f'dashboard_token = "{TOKEN}"\n')
    stack = start_stack(workdir)
    assert stack.process.stdout is not None
    banner = [stack.up_line, *(stack.process.stdout.readline().rstrip("\n") for _ in range(2))]
    dashboard = re.search(r"dashboard: http://127\.0\.0\.1:(\d+)$", banner[-1])
    out_dir = workdir / "out"
    out_dir.mkdir()
    env = stack.env | {"TRIARB_CONFIG": str(config), "TRIARB_DASHBOARD_TOKEN": TOKEN}
    try:
        assert dashboard is not None, f"no dashboard line in the banner: {banner}"
        yield DemoStack(stack, banner, int(dashboard[1]), env, out_dir)
    finally:
        if stack.process.poll() is None:
            interrupt(stack)


def tail_until_matched(demo: DemoStack, stream: str, documented: list[str], timeout_s: float) -> list[str]:
    """Follow ``triarb tail STREAM --from 0`` until every documented line matched a printed one (or the
    timeout: opportunities first appear ~10 s into the demo session); returns the lines not matched."""
    process = subprocess.Popen([sys.executable, "-m", "triarb.cli", "tail", stream, "--from", "0"], cwd=REPO,
                               env=demo.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    watchdog = threading.Timer(timeout_s, process.kill)
    watchdog.start()
    unmatched = list(documented)
    try:
        for printed in process.stdout:
            unmatched = [line for line in unmatched if not matches_line(line, printed)]
            if not unmatched:
                break
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=10)
    return unmatched


# --- output examples that are not transcripts -----------------------------------------------------------------

@pytest.mark.parametrize("block", BANNERS, ids=lambda block: f"line {block.line_no}")
def test_up_banner_is_what_up_prints(demo: DemoStack, block: Block) -> None:
    assert matches_output(block.lines, "\n".join(demo.banner)), (block.lines, demo.banner)


TAIL_SAMPLE_LINES = {stream: [line for block in TAIL_SAMPLES for line in block.lines if line.split()[2] == stream]
                     for stream in sorted({line.split()[2] for block in TAIL_SAMPLES for line in block.lines})}


@pytest.mark.parametrize("stream", TAIL_SAMPLE_LINES)
def test_tail_sample_lines_look_like_what_tail_prints(demo: DemoStack, stream: str) -> None:
    unmatched = tail_until_matched(demo, stream, TAIL_SAMPLE_LINES[stream], timeout_s=40)
    assert not unmatched, f"`triarb tail {stream}` printed no line like these README lines: {unmatched}"


@pytest.mark.parametrize("step", INLINE_CURLS, ids=lambda step: step.command)
def test_inline_curl_answers_as_documented(demo: DemoStack, step: Step) -> None:
    result = demo.run(step.command)
    assert result.returncode == 0, result.stderr
    if step.output:
        assert matches_output(step.output, result.stdout), (step.output, result.stdout)
    else:
        assert result.stdout.strip(), f"`{step.command}` printed nothing"


# --- transcripts and sh lines ---------------------------------------------------------------------------------

@pytest.mark.parametrize("step", TRANSCRIPT_STEPS, ids=lambda step: step.command)
def test_transcript_command_prints_what_the_readme_shows(demo: DemoStack, step: Step) -> None:
    result = demo.run(step.command)
    printed = result.stdout + result.stderr
    if not step.output:
        assert result.returncode == 0, printed
        assert printed.strip() not in EMPTY_ANSWERS and not printed.strip().startswith("(error)"), (
            f"`{step.command}` answered {printed.strip()!r}: documented with no output, it must answer something")
        return
    if not any("(error)" in line for line in step.output):
        assert result.returncode == 0, printed
    assert matches_output(step.output, printed), "\n".join(
        ["README shows:", *step.output, "the command printed:", printed])


@pytest.mark.parametrize("step", SH_STEPS, ids=lambda step: step.command)
def test_sh_example_line_runs_as_documented(demo: DemoStack, step: Step) -> None:
    if step.command in SKIPPED:
        pytest.skip(f"not run: {SKIPPED[step.command]}")
    if "../shared/fixtures/" in step.command and not FIXTURES.is_dir():
        pytest.skip(f"the recorded sessions are not at {FIXTURES} (expected ../shared beside the repo)")
    status = re.search(r"\((\d{3})\)$", step.comment)
    command = f"{step.command} -w '\\n%{{http_code}}'" if status and step.command.startswith("curl ") else step.command

    result = demo.run(command)

    assert result.returncode == 0, result.stdout + result.stderr
    if status and step.command.startswith("curl "):
        assert result.stdout.splitlines()[-1] == status[1], f"HTTP status, README says {status[1]}: {result.stdout}"
    if checksums := re.search(r"([\d,]+) checksums ok, (\d+) fail", step.comment):
        summary = json.loads(result.stdout)
        assert (summary["checksum_ok"], summary["checksum_fail"]) == (
            int(checksums[1].replace(",", "")), int(checksums[2]))
    if out := re.search(r"--out var/(\S+)", step.command):
        assert (demo.out_dir / out[1]).stat().st_size > 0


def test_skipped_lines_are_readme_sh_lines() -> None:
    assert set(SKIPPED) <= {step.command for step in SH_STEPS}, set(SKIPPED) - {step.command for step in SH_STEPS}


# --- reference blocks -----------------------------------------------------------------------------------------

def test_command_summary_lists_exactly_the_cli_commands(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "triarb.cli", "--help"], env=clean_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    cli_commands = set(re.findall(r"^    ([a-z-]+)", result.stdout, re.MULTILINE))
    for block in COMMAND_SUMMARIES:
        assert set(re.findall(r"^triarb ([a-z-]+)", "\n".join(block.lines), re.MULTILINE)) == cli_commands


@pytest.mark.parametrize("block", TOML_EXAMPLES, ids=lambda block: f"line {block.line_no}")
def test_toml_example_is_what_config_reads(tmp_path: Path, block: Block) -> None:
    config_file = tmp_path / "example.toml"
    config_file.write_text("\n".join(block.lines) + "\n")
    result = subprocess.run([sys.executable, "-m", "triarb.cli", "--config", str(config_file), "config"],
                            env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    for key, value in tomllib.loads(config_file.read_text()).items():
        expected = value if isinstance(value, dict) else {None: value}
        for field, field_value in expected.items():
            assert (effective[key] if field is None else effective[key][field]) == field_value, (key, field)


def test_every_readme_block_is_checked_or_listed() -> None:
    for prefix in NOT_EXAMPLES:
        assert any(block.lines and block.lines[0].strip().startswith(prefix) for block in ALL_BLOCKS), (
            f"NOT_EXAMPLES names a block the README no longer has: {prefix!r}")
    checked = [*BANNERS, *TAIL_SAMPLES, *COMMAND_SUMMARIES, *TOML_EXAMPLES]
    unknown = [block.line_no for block in BLOCKS
               if block not in checked and not is_transcript(block) and block.lang != "sh"]
    assert not unknown, f"README blocks at lines {unknown}: teach this test to check them, or list them in NOT_EXAMPLES"
