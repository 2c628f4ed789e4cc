"""Tools recognised from what real processes have loaded or open, whatever they are called.

Real processes, real libraries: huggingface_hub from the test environment; gradio and the GPT4All
Python bindings from a scratch venv made once per machine (skipped when PyPI cannot be reached).
Nothing here opens a network connection: the library processes run with telemetry switched off
and never launch a server.
"""

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import venv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from egresswatch.attribute.evidence import mapped_files, open_files, read_evidence
from egresswatch.attribute.pidfs import open_pid
from egresswatch.attribute.process import ExeHasher, ProcessFacts
from egresswatch.model import ProcessInfo

PROC = Path("/proc")
TOOL_LIBS = ("gradio==6.31.0", "gpt4all==2.8.2")
QUIET_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "DO_NOT_TRACK": "1",
}
WAIT = "import sys\nprint('ready', flush=True)\nsys.stdin.read()\n"
HOLD_MODEL = """\
import mmap, sys
f = open(sys.argv[1], "rb")
m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
"""


def _write_gguf(path: Path) -> None:
    """A real (empty) GGUF v3 file: magic, version, no tensors, one metadata key."""
    key, value = b"general.name", b"egresswatch-test"
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    kv = struct.pack("<Q", len(key)) + key + struct.pack("<I", 8)
    path.write_bytes(header + kv + struct.pack("<Q", len(value)) + value)


@contextmanager
def _running(argv: list[str], cwd: Path | None = None, argv0: str | None = None) -> Iterator[int]:
    """Starts a real process, waits until it says ready, yields its pid, ends it."""
    with subprocess.Popen(
        [argv0 or argv[0], *argv[1:]], executable=argv[0], cwd=cwd, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, **QUIET_ENV},
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", "the process did not start"
            yield proc.pid
        finally:
            proc.kill()


def _facts(pid: int) -> ProcessInfo:
    hasher = ExeHasher()
    try:
        return ProcessFacts(PROC, hasher).info(pid)
    finally:
        hasher.close()


def test_a_process_holding_a_gguf_file_serves_a_model_whatever_its_name(tmp_path: Path) -> None:
    model = tmp_path / "qwen2-0_5b-instruct-q4_k_m.gguf"
    _write_gguf(model)
    script = HOLD_MODEL + WAIT
    with _running([sys.executable, "-c", script, str(model)], argv0="innocent-name") as pid:
        info = _facts(pid)
    assert info.tool == "local model server"
    assert info.tool_reason == f"holds model file {model} open"


def test_a_script_importing_a_real_library_is_recognised(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import huggingface_hub\n" + WAIT)
    with _running([sys.executable, "app.py"], cwd=tmp_path) as pid:
        info = _facts(pid)
    assert info.tool == "huggingface_hub / transformers"
    assert info.tool_reason == "its script imports huggingface_hub"


def test_the_real_hf_cli_is_recognised_while_it_downloads(tmp_path: Path) -> None:
    """`hf download` against a loopback endpoint that accepts and never answers."""
    hf = Path(sys.executable).parent / "hf"
    with socket.create_server(("127.0.0.1", 0)) as server:
        env = {**os.environ, **QUIET_ENV, "HF_HUB_OFFLINE": "0",
               "HF_ENDPOINT": f"http://127.0.0.1:{server.getsockname()[1]}"}  # fmt: skip
        argv = [str(hf), "download", "org/model", "--local-dir", str(tmp_path / "m")]
        with subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ) as proc:
            try:
                server.settimeout(60)
                conn, _ = server.accept()  # the CLI is mid-request now
                with conn:
                    info = _facts(proc.pid)
            finally:
                proc.kill()
    assert info.tool == "huggingface_hub / transformers"
    assert info.tool_reason == "rule command:hf"


def test_a_plain_script_is_no_tool(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import json\n" + WAIT)
    with _running([sys.executable, str(app)]) as pid:
        info = _facts(pid)
    assert (info.tool, info.tool_reason) == (None, None)


def test_a_tools_csv_rule_says_so(tmp_path: Path) -> None:
    script = tmp_path / "koboldcpp.py"
    script.write_text(WAIT)
    with _running([sys.executable, str(script)]) as pid:
        info = _facts(pid)
    assert info.tool == "koboldcpp"
    assert info.tool_reason == "rule command:koboldcpp.py"


def test_reading_evidence_of_a_vanished_process_gives_nothing(tmp_path: Path) -> None:
    with _running([sys.executable, "-c", WAIT]) as pid:
        pid_dir = open_pid(str(PROC), pid)
    try:
        assert mapped_files(pid_dir) == ()
        assert open_files(pid_dir) == ()
        assert read_evidence(pid_dir, str(tmp_path / "gone.py")).imports == ()
    finally:
        os.close(pid_dir)


def test_a_fifo_named_like_a_script_is_never_read(tmp_path: Path) -> None:
    fifo = tmp_path / "app.py"
    os.mkfifo(fifo)
    with _running([sys.executable, "-c", WAIT]) as pid:
        pid_dir = open_pid(str(PROC), pid)
        try:
            assert read_evidence(pid_dir, str(fifo)).imports == ()  # returns, never blocks
        finally:
            os.close(pid_dir)


@pytest.fixture(scope="session")
def tool_libs_python() -> Path:
    """A venv with real gradio and GPT4All bindings, made once per machine and then reused."""
    tag = hashlib.sha256(" ".join((sys.version, *TOOL_LIBS)).encode()).hexdigest()[:12]
    home = Path(tempfile.gettempdir()) / f"egresswatch-tool-libs-{tag}"
    python = home / "bin" / "python"
    if not (home / "ready").exists():
        shutil.rmtree(home, ignore_errors=True)
        venv.create(home, with_pip=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *TOOL_LIBS],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        if pip.returncode != 0:
            shutil.rmtree(home, ignore_errors=True)
            pytest.skip(f"cannot install {TOOL_LIBS} from PyPI: {pip.stderr.strip()[-300:]}")
        (home / "ready").touch()
    return python


def test_a_gradio_app_run_as_python_app_py_is_recognised(
    tool_libs_python: Path, tmp_path: Path
) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "import gradio as gr\n"
        "with gr.Blocks() as demo:\n    gr.Markdown('hello')\n" + WAIT  # built, never launched
    )
    with _running([str(tool_libs_python), "app.py"], cwd=tmp_path) as pid:
        info = _facts(pid)
    assert info.tool == "Gradio apps (library)"
    assert info.tool_reason == "its script imports gradio"


def test_gpt4all_bindings_are_recognised_from_the_library_they_load(
    tool_libs_python: Path,
) -> None:
    with _running([str(tool_libs_python), "-c", "import gpt4all\n" + WAIT]) as pid:
        info = _facts(pid)
    assert info.tool == "GPT4All"
    assert info.tool_reason is not None
    assert info.tool_reason.startswith("has /")
    assert "/gpt4all/llmodel_DO_NOT_MODIFY/build/libllmodel.so" in info.tool_reason


def test_a_gpt4all_bindings_script_is_recognised(tool_libs_python: Path, tmp_path: Path) -> None:
    chat = tmp_path / "chat.py"
    chat.write_text("from gpt4all import GPT4All\n" + WAIT)  # the model is never loaded
    with _running([str(tool_libs_python), "chat.py"], cwd=tmp_path) as pid:
        info = _facts(pid)
    assert info.tool == "GPT4All"
    assert info.tool_reason is not None
    assert "libllmodel.so loaded" in info.tool_reason  # the loaded library wins over the import
