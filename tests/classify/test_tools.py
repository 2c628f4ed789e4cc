"""LLM-tool recognition from process facts: signatures, python servers, ancestry, negatives."""

import csv
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.classify.tools import (
    describe_launch,
    load_tool_rules,
    recognise_tool,
)
from egresswatch.errors import ConfigError
from egresswatch.model import ProcessInfo, ProcessRef

REPO = Path(__file__).resolve().parents[2]
SIGNATURES = REPO / ".." / "shared" / "catalog" / "llm-tool-signatures.csv"
RULES = load_tool_rules()
IN_PROCESS_ONLY = {"LangSmith (LangChain)"}  # an SDK inside the host app: no process to match


@dataclass(frozen=True)
class Case:
    tool: str
    marker: str  # text from the tool's row in the signatures file this launch is built from
    name: str
    exe: str | None
    cmdline: Sequence[str]
    cwd: str | None = None


PY = "/usr/bin/python3.11"
CASES = [
    Case(
        "Ollama",
        "ollama serve",
        "ollama",
        "/usr/local/bin/ollama",
        ["/usr/local/bin/ollama", "serve"],
    ),
    Case(
        "Ollama",
        "ollama runner",
        "ollama",
        "/usr/local/bin/ollama",
        [
            "/usr/local/bin/ollama",
            "runner",
            "--model",
            "/usr/share/ollama/.ollama/models/blobs/sha256-x",
            "--port",
            "41231",
        ],
    ),
    Case(
        "llama.cpp",
        "llama-server",
        "llama-server",
        "/opt/llama.cpp/build/bin/llama-server",
        ["llama-server", "-hf", "ggml-org/gemma-3-1b-it-GGUF"],
    ),
    Case(
        "llama.cpp",
        "llama-cli",
        "llama-cli",
        "/usr/local/bin/llama-cli",
        ["llama-cli", "--hf-repo", "x/y"],
    ),
    Case(
        "llama.cpp",
        "llama-mtmd-cli",
        "llama-mtmd-cli",
        "/usr/local/bin/llama-mtmd-cli",
        ["llama-mtmd-cli"],
    ),
    Case(
        "LM Studio",
        ".mount_LM-Stu",
        "lm-studio",
        "/tmp/.mount_LM-StuAbC123/lm-studio",
        ["/tmp/.mount_LM-StuAbC123/lm-studio", "--no-sandbox"],
    ),
    Case(
        "LM Studio",
        "lms",
        "lms",
        "/home/u/.lmstudio/bin/lms",
        ["/home/u/.lmstudio/bin/lms", "server", "start"],
    ),
    Case("LM Studio", "llmster", "llmster", "/home/u/.lmstudio/llmster/0.4/llmster", ["llmster"]),
    Case(
        "LM Studio",
        "LM Studio",
        "LM Studio",
        "/opt/LM Studio/lm-studio",
        ["/opt/LM Studio/lm-studio"],
    ),
    Case("Jan", "Jan-Desktop", "Jan-Desktop", "/usr/bin/Jan-Desktop", ["/usr/bin/Jan-Desktop"]),
    Case(
        "Jan",
        "llamacpp/backends",
        "llama-server",
        "/home/u/.local/share/Jan/data/llamacpp/backends/b6000/linux-cuda-12-common_cpus-x64/build/bin/llama-server",
        ["llama-server", "--port", "3123", "-m", "/m.gguf"],
    ),
    Case(
        "GPT4All",
        "gpt4all/bin/chat",
        "chat",
        "/home/u/gpt4all/bin/chat",
        ["/home/u/gpt4all/bin/chat"],
    ),
    Case(
        "GPT4All",
        "maintenancetool",
        "maintenancetool",
        "/home/u/gpt4all/maintenancetool",
        ["./maintenancetool"],
    ),
    Case(
        "Open WebUI",
        "open-webui serve",
        "open-webui",
        PY,
        ["/opt/open-webui/venv/bin/python3", "/opt/open-webui/venv/bin/open-webui", "serve"],
    ),
    Case(
        "Open WebUI",
        "open_webui.main:app",
        "uvicorn",
        PY,
        [
            "/usr/local/bin/python3",
            "/usr/local/bin/uvicorn",
            "open_webui.main:app",
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
            "--forwarded-allow-ips",
            "*",
        ],
    ),
    Case(
        "Open WebUI",
        "open-webui serve",
        "python3",
        PY,
        ["/home/u/.local/pipx/venvs/x/bin/python", "-m", "open_webui", "serve"],
    ),
    Case(
        "ComfyUI",
        "main.py",
        "python3",
        PY,
        ["python", "main.py", "--listen"],
        cwd="/home/u/ComfyUI",
    ),
    Case(
        "ComfyUI",
        "main.py",
        "python3",
        PY,
        ["/srv/comfy/venv/bin/python", "/srv/ComfyUI/main.py", "--port", "8188"],
    ),
    Case(
        "ComfyUI",
        "--front-end-version",
        "python3",
        PY,
        ["python3", "main.py", "--front-end-version", "Comfy-Org/ComfyUI_frontend@latest"],
    ),
    Case("ComfyUI Desktop", "ComfyUI", "ComfyUI", "/opt/ComfyUI/ComfyUI", ["/opt/ComfyUI/ComfyUI"]),
    Case(
        "ComfyUI-Manager",
        "custom_nodes/ComfyUI-Manager",
        "python3",
        PY,
        ["python", "custom_nodes/ComfyUI-Manager/cm-cli.py", "update", "all"],
        cwd="/home/u/ComfyUI",
    ),
    Case(
        "comfy-cli",
        "comfy launch",
        "comfy",
        PY,
        ["/home/u/.venv/bin/python", "/home/u/.venv/bin/comfy", "launch"],
    ),
    Case(
        "vLLM",
        "vllm serve",
        "vllm",
        PY,
        ["/srv/vllm/bin/python3", "/srv/vllm/bin/vllm", "serve", "Qwen/Qwen3-0.6B"],
    ),
    Case(
        "vLLM",
        "vllm.entrypoints.openai.api_server",
        "python3",
        PY,
        [
            "python3",
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            "facebook/opt-125m",
            "--tensor-parallel-size",
            "2",
        ],
    ),
    Case(
        "text-generation-webui",
        "server.py",
        "python",
        "/home/u/text-generation-webui/installer_files/env/bin/python3.11",
        [
            "/home/u/text-generation-webui/installer_files/env/bin/python",
            "server.py",
            "--api",
            "--listen",
        ],
        cwd="/home/u/text-generation-webui",
    ),
    Case(
        "text-generation-webui",
        "one_click.py",
        "python",
        PY,
        ["python", "one_click.py"],
        cwd="/home/u/text-generation-webui-main",
    ),
    Case("LocalAI", "local-ai run", "local-ai", "/usr/bin/local-ai", ["local-ai", "run", "--p2p"]),
    Case(
        "LocalAI",
        "llama-cpp-fallback",
        "llama-cpp-fallb",
        "/tmp/localai/backend_data/backend-assets/grpc/llama-cpp-fallback",
        [
            "/tmp/localai/backend_data/backend-assets/grpc/llama-cpp-fallback",
            "--addr",
            "127.0.0.1:35001",
        ],
    ),
    Case(
        "koboldcpp",
        "koboldcpp-linux-x64",
        "koboldcpp-linux",
        "/home/u/koboldcpp-linux-x64-cuda1210",
        ["./koboldcpp-linux-x64-cuda1210", "--port", "5001"],
    ),
    Case("koboldcpp", "koboldcpp.py", "python3", PY, ["python3", "koboldcpp.py", "--remotetunnel"]),
    Case(
        "AnythingLLM",
        "AnythingLLMDesktop.AppImage",
        "anythingllm-des",
        "/tmp/.mount_AnythiQx81a/anythingllm-desktop",
        ["/tmp/.mount_AnythiQx81a/anythingllm-desktop"],
    ),
    Case(
        "AnythingLLM",
        "server/index.js",
        "node",
        "/usr/bin/node",
        ["node", "/opt/anything-llm/server/index.js"],
    ),
    Case("Msty", "Msty", "Msty", "/opt/Msty/Msty", ["/opt/Msty/Msty"]),
    Case(
        "Continue",
        "continue-binary",
        "continue-binary",
        "/home/u/.vscode/extensions/continue.continue-1.0.0-linux-x64/bin/continue-binary",
        ["continue-binary"],
    ),
    Case(
        "Gradio apps (library)",
        "gradio",
        "gradio",
        PY,
        ["/venv/bin/python", "/venv/bin/gradio", "app.py"],
    ),
    Case(
        "chromadb",
        "chroma run",
        "chroma",
        "/venv/bin/chroma",
        ["/venv/bin/chroma", "run", "--path", "/db"],
    ),
    Case(
        "huggingface_hub / transformers",
        "hf download",
        "hf",
        PY,
        ["/venv/bin/python", "/venv/bin/hf", "download", "gpt2"],
    ),
]


def _shared_rows() -> dict[str, str]:
    if not SIGNATURES.exists():
        pytest.skip(
            f"shared signatures not found at {SIGNATURES} (needs ../shared beside the repo)"
        )
    with SIGNATURES.open(newline="", encoding="utf-8") as fh:
        return {row["tool"]: ",".join(row.values()) for row in csv.DictReader(fh)}


def test_every_signature_tool_has_rules() -> None:
    shared = _shared_rows()
    assert len(shared) == 21
    assert set(shared) - IN_PROCESS_ONLY <= RULES.tools
    brief = {
        "Ollama",
        "LM Studio",
        "llama.cpp",
        "Jan",
        "GPT4All",
        "Open WebUI",
        "ComfyUI",
        "ComfyUI Desktop",
        "vLLM",
        "text-generation-webui",
        "LocalAI",
        "koboldcpp",
        "AnythingLLM",
        "Gradio apps (library)",
        "VS Code AI extension host",
    }
    assert brief <= RULES.tools


def test_cases_come_from_the_signatures_file() -> None:
    shared = _shared_rows()
    for case in CASES:
        assert case.marker in shared[case.tool], (case.tool, case.marker)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.tool}:{c.marker}")
def test_launches_are_recognised(case: Case) -> None:
    match = recognise_tool(case.name, case.exe, case.cmdline, cwd=case.cwd)
    assert match is not None and match.tool == case.tool, match
    assert match.inherited_from is None and match.rule


NEGATIVES = [
    ("python3", PY, ["python3"]),
    ("python3", PY, ["python3", "-c", "import vllm, ollama"]),
    ("python3", PY, ["python3", "/home/u/project/main.py", "--port", "8000"]),
    ("python3", PY, ["python3", "main.py"]),  # no cwd: cannot tell which main.py
    ("vim", "/usr/bin/vim", ["vim", "/home/u/ollama/notes.txt"]),
    ("less", "/usr/bin/less", ["less", "/home/u/ComfyUI/main.py"]),
    ("grep", "/usr/bin/grep", ["grep", "ollama serve", "/var/log/syslog"]),
    ("cat", "/usr/bin/cat", ["cat", "llama-server.log"]),
    ("ollamax", "/usr/bin/ollamax", ["ollamax"]),
    ("my-ollama-help", "/usr/bin/my-ollama-helper", ["my-ollama-helper"]),
    ("chat", "/usr/bin/chat", ["chat"]),
    ("node", "/usr/bin/node", ["node", "/app/server/index.js"]),
    ("code", "/usr/share/code/code", ["/usr/share/code/code", "--type=renderer"]),
    ("bash", "/usr/bin/bash", ["bash", "-c", "ollama serve"]),
    ("sh", "/usr/bin/dash", []),
    ("", None, []),
]


@pytest.mark.parametrize(("name", "exe", "cmdline"), NEGATIVES)
def test_lookalikes_are_not_tools(name: str, exe: str | None, cmdline: list[str]) -> None:
    assert recognise_tool(name, exe, cmdline) is None


def test_vs_code_extension_host_but_not_its_terminals() -> None:
    code = "/usr/share/code/code"
    host = recognise_tool("code", code, [code, "--type=extensionHost", "--inspect-port=0"])
    assert host is not None and host.tool == "VS Code AI extension host"
    copilot = "/home/u/.vscode/extensions/github.copilot-chat-0.30.0/dist/copilot-language-server"
    assert recognise_tool("copilot-languag", copilot, [copilot, "--stdio"]) is not None
    # Terminal shells descend from the pty host, never from the extension host.
    pty = ProcessRef(20, "code", code)
    main = ProcessRef(10, "code", code)
    shell = recognise_tool(
        "bash",
        "/usr/bin/bash",
        ["bash"],
        [pty, main],
        [[code, "--type=utility", "--utility-sub-type=node.mojom.NodeService"], [code]],
    )
    assert shell is None


def test_children_inherit_from_the_nearest_recognised_ancestor() -> None:
    tgw = ProcessRef(
        30, "python", "/home/u/text-generation-webui/installer_files/env/bin/python3.11"
    )
    shell = ProcessRef(20, "bash", "/usr/bin/bash")
    jan = ProcessRef(10, "Jan", "/usr/bin/Jan")
    match = recognise_tool("pip", PY, ["python", "-m", "pip", "install", "x"], [tgw, shell, jan])
    assert match is not None
    assert (match.tool, match.inherited_from, match.depth) == ("text-generation-webui", 30, 1)
    helper = recognise_tool(
        "cloudflared", "/tmp/cloudflared", ["cloudflared", "tunnel"], [shell, jan]
    )
    assert helper is not None and (helper.tool, helper.depth) == ("Jan", 2)
    own = recognise_tool("llama-server", "/usr/bin/llama-server", ["llama-server"], [jan])
    assert own is not None and own.tool == "llama.cpp" and own.inherited_from is None


def test_ancestor_command_lines_are_used_when_given() -> None:
    parent = ProcessRef(40, "python3", PY)
    args = [["python3", "-m", "vllm.entrypoints.openai.api_server"]]
    match = recognise_tool("ray::Worker", PY, ["ray::Worker"], [parent], args)
    assert match is not None and match.tool == "vLLM" and match.rule == "command:vllm.entrypoints.*"
    assert recognise_tool("ray::Worker", PY, ["ray::Worker"], [parent]) is None


def test_systemd_unit_and_process_info() -> None:
    info = ProcessInfo(
        pid=5,
        name="runner",
        exe="/opt/x/runner",
        exe_sha256=None,
        cmdline=("runner",),
        user="ollama",
        ppid=1,
        start_time=None,
        ancestry=(ProcessRef(1, "systemd", "/usr/lib/systemd/systemd"),),
        netns=None,
        container="/system.slice/ollama.service",
    )
    match = RULES.recognise_process(info)
    assert match is not None and (match.tool, match.rule) == ("Ollama", "unit:*ollama.service*")


def test_hostile_command_lines_are_bounded() -> None:
    huge = ["python3", "-W", "x", *["-v"] * 200_000, "main.py"]
    started = time.perf_counter()
    assert recognise_tool("python3", PY, huge) is None
    assert recognise_tool("\x00\udcff", "\n", ["\x1b[2J" * 10_000, "...", "*"]) is None
    assert time.perf_counter() - started < 1.0
    assert describe_launch(None, ["node", "--require", "x.js", "srv.js", "-p"]).program == "srv.js"


def test_user_rules_come_first_and_malformed_ones_are_errors(tmp_path: Path) -> None:
    rules = tmp_path / "tools.csv"
    rules.write_text(
        "tool,kind,pattern,source\nMy Gradio app,path,/srv/demo/app.py,ours\n"
        "Not Ollama,name,ollama,test override\n",
        encoding="utf-8",
    )
    loaded = load_tool_rules(rules)
    demo = loaded.recognise("python3", PY, ["python3", "/srv/demo/app.py"])
    assert demo is not None and demo.tool == "My Gradio app"
    first = loaded.recognise("ollama", "/usr/bin/ollama", ["ollama"])
    assert first is not None and first.tool == "Not Ollama"
    for body, line in [
        ("tool,kind\n", 1),
        ("tool,kind,pattern,source\nX,colour,red,s\n", 2),
        ("tool,kind,pattern,source\nX,command,... serve,s\n", 2),
        ("tool,kind,pattern,source\n\n,name,x,s\n", 3),
    ]:
        rules.write_text(body, encoding="utf-8")
        with pytest.raises(ConfigError, match=f"{rules}:{line}:"):
            load_tool_rules(rules)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tool_rules(tmp_path / "absent.csv")


# ---- real processes, named and launched like the tools ------------------------------------


def _facts(pid: int) -> tuple[str, str | None, list[str], str, list[ProcessRef], list[list[str]]]:
    proc = psutil.Process(pid)
    parents = proc.parents()
    refs = [ProcessRef(p.pid, p.name(), _exe(p)) for p in parents]
    return proc.name(), _exe(proc), proc.cmdline(), proc.cwd(), refs, [p.cmdline() for p in parents]


def _exe(proc: psutil.Process) -> str | None:
    try:
        return str(proc.exe()) or None
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
        except psutil.NoSuchProcess:
            pass
        proc.kill()
        proc.wait()


def _wait_for(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, "process did not start"
        time.sleep(0.02)


def test_real_ollama_named_process_and_its_child(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    shell = shutil.which("sh")
    assert shell is not None
    ollama = tmp_path / "bin" / "ollama"
    ollama.parent.mkdir()
    shutil.copy(shell, ollama)
    # "; true" keeps the shell alive as the parent instead of exec-ing sleep.
    parent = subprocess.Popen([str(ollama), "-c", "sleep 30; true"])
    spawned.append(parent)
    _wait_for(lambda: bool(psutil.Process(parent.pid).children()))
    name, exe, cmdline, cwd, refs, cmdlines = _facts(parent.pid)
    own = recognise_tool(name, exe, cmdline, refs, cmdlines, cwd=cwd)
    assert own is not None and own.tool == "Ollama" and own.inherited_from is None
    child = psutil.Process(parent.pid).children()[0]
    name, exe, cmdline, cwd, refs, cmdlines = _facts(child.pid)
    match = recognise_tool(name, exe, cmdline, refs, cmdlines, cwd=cwd)
    assert match is not None and (match.tool, match.inherited_from) == ("Ollama", parent.pid)


def test_real_python_servers(tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    module = tmp_path / "site" / "vllm" / "entrypoints" / "openai"
    module.mkdir(parents=True)
    for package in (module, module.parent, module.parent.parent):
        (package / "__init__.py").write_text("", encoding="utf-8")
    (module / "api_server.py").write_text("import time\ntime.sleep(30)\n", encoding="utf-8")
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text("import time\ntime.sleep(30)\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    vllm = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--port", "8000"], env=env
    )
    spawned.append(vllm)
    server = subprocess.Popen([sys.executable, "main.py", "--listen"], cwd=comfy)
    spawned.append(server)
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    spawned.append(plain)
    expected = {vllm.pid: "vLLM", server.pid: "ComfyUI", plain.pid: None}
    for pid, tool in expected.items():
        _wait_for(lambda pid=pid: len(psutil.Process(pid).cmdline()) > 1)  # type: ignore[misc]
        name, exe, cmdline, cwd, refs, cmdlines = _facts(pid)
        match = recognise_tool(name, exe, cmdline, refs, cmdlines, cwd=cwd)
        assert (match.tool if match else None) == tool, (cmdline, match)


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=40),
    st.one_of(st.none(), st.text(max_size=80)),
    st.lists(st.text(max_size=40), max_size=12),
    st.one_of(st.none(), st.text(max_size=40)),
)
def test_arbitrary_process_facts_never_raise(
    name: str, exe: str | None, cmdline: list[str], cwd: str | None
) -> None:
    parent = ProcessRef(1, name, exe)
    match = recognise_tool(name, exe, cmdline, [parent], [cmdline], cwd=cwd, unit=cwd)
    assert match is None or match.tool in RULES.tools
