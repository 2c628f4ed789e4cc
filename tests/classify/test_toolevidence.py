"""Tool recognition from evidence: loaded libraries, a script's imports and open model files."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.classify.toolevidence import (
    ProcessEvidence,
    default_evidence_rules,
    parse_evidence_rules,
    script_imports,
)
from egresswatch.classify.tools import default_tool_rules, interpreted_script
from egresswatch.errors import ConfigError

RULES = default_evidence_rules()

GRADIO_APP = """\
\"\"\"A demo.\"\"\"
import os
import gradio as gr
from transformers import pipeline
"""
NODE_SERVER = """\
const express = require('express');
import { getLlama } from "node-llama-cpp";
import x from './local.js';
import fs from 'node:fs';
const t = await import('@huggingface/transformers');
"""


def test_python_imports_are_top_level_modules() -> None:
    assert script_imports(GRADIO_APP, "app.py") == ("os", "gradio", "transformers")
    assert script_imports("x = 'import gradio'\n", "app.py") == ()
    assert script_imports("import numpy as np, gradio as gr  # ui\n", "a.py") == ("numpy", "gradio")
    assert script_imports("    import huggingface_hub.utils\n", "a.py") == ("huggingface_hub",)


def test_javascript_imports_are_packages_not_files() -> None:
    found = script_imports(NODE_SERVER, "server.js")
    assert found == ("express", "node-llama-cpp", "@huggingface/transformers")


@pytest.mark.parametrize(
    ("evidence", "tool", "reason"),
    [
        (ProcessEvidence(imports=("os", "gradio")), "Gradio apps (library)",
         "its script imports gradio"),
        (ProcessEvidence(imports=("express", "node-llama-cpp")), "node-llama-cpp",
         "its script imports node-llama-cpp"),
        (ProcessEvidence(mapped=("/v/lib/python3.11/site-packages/gpt4all/llmodel_DO_NOT_MODIFY/"
                                 "build/libllmodel.so",)), "GPT4All", "has /v/lib"),
        (ProcessEvidence(imports=("express", "@langchain/openai")), "LangChain app",
         "its script imports @langchain/openai"),
        (ProcessEvidence(imports=("langchain_community",)), "LangChain app",
         "its script imports langchain_community"),
        (ProcessEvidence(imports=("openai",)), "OpenAI SDK app", "its script imports openai"),
        (ProcessEvidence(open_files=("/srv/m/qwen2-0_5b.Q4_K_M.gguf",)), "local model server",
         "holds model file /srv/m/qwen2-0_5b.Q4_K_M.gguf open"),
        (ProcessEvidence(mapped=("/data/model.safetensors",)), "local model server",
         "holds model file /data/model.safetensors open"),
    ],
)  # fmt: skip
def test_evidence_names_the_tool_and_why(evidence: ProcessEvidence, tool: str, reason: str) -> None:
    found = RULES.recognise(evidence)
    assert found is not None
    assert found.tool == tool
    assert found.reason.startswith(reason)
    assert found.source


def test_ordinary_processes_have_no_evidence() -> None:
    plain = ProcessEvidence(
        mapped=("/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/python3.11"),
        open_files=("/home/u/notes.txt", "/home/u/model.gguf.txt"),
        imports=("os", "requests", "gradio_theme_tools"),
    )
    assert RULES.recognise(plain) is None


def test_evidence_tools_are_tools_the_catalog_can_use() -> None:
    known = default_tool_rules().tools
    assert {"Gradio apps (library)", "GPT4All", "huggingface_hub / transformers"} <= known
    assert RULES.tools - known <= {
        "local model server", "llama-cpp-python", "node-llama-cpp", "transformers.js",
        "LangChain app", "LlamaIndex app", "OpenAI SDK app", "Anthropic SDK app",
        "Ollama client app",
    }  # fmt: skip


def test_bad_rule_files_are_named_errors() -> None:
    header = "tool,kind,pattern,source\n"
    with pytest.raises(ConfigError, match="r:2: unknown kind"):
        parse_evidence_rules(header + "X,argv,foo,src\n", "r")
    with pytest.raises(ConfigError, match="r:2: empty"):
        parse_evidence_rules(header + ",import,foo,src\n", "r")
    with pytest.raises(ConfigError, match="r:2: expected 4"):
        parse_evidence_rules(header + "X,import\n", "r")


@pytest.mark.parametrize(
    ("exe", "cmdline", "cwd", "script"),
    [
        ("/usr/bin/python3.11", ("python3", "app.py"), "/srv", "/srv/app.py"),
        ("/usr/bin/node", ("node", "--require", "x", "server.js"), None, "server.js"),
        ("/usr/bin/python3.11", ("python3", "-m", "gradio"), None, None),
        ("/usr/bin/python3.11", ("python3", "-c", "import gradio"), None, None),
        ("/usr/bin/curl", ("curl", "app.py"), None, None),
        ("/usr/bin/python3.11", ("/usr/bin/python3.11",), None, None),
    ],
)
def test_the_script_of_an_interpreter(
    exe: str, cmdline: tuple[str, ...], cwd: str | None, script: str | None
) -> None:
    assert interpreted_script(exe, cmdline, cwd) == script


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=2000), suffix=st.sampled_from(["app.py", "server.js", "x.mjs"]))
def test_script_imports_never_raises_on_any_text(text: str, suffix: str) -> None:
    found = script_imports(text, suffix)
    assert all(found) and len(set(found)) == len(found)
