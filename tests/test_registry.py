"""Registries outside code can extend: names, lazy entries, entry points, did-you-mean hints."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import peftbench
from peftbench.errors import UserError
from peftbench.methods import Method, capabilities, get_method, method_names, register_method
from peftbench.registry import Registry
from peftbench.tasks import Example, Task, get_task, register, register_task, task_names

PLUGIN = "peftbench_demo_plugin"
PLUGIN_CODE = '''
"""A technique and a task from outside peftbench, found through entry points."""

from peftbench.methods import Method
from peftbench.tasks import Example, Task


class StepCountingLora(Method):
    """LoRA that counts the optimizer steps it saw (a training hook)."""

    steps_seen = 0

    def after_step(self, model, step):
        type(self).steps_seen += 1


DEMO_LORA = StepCountingLora(name="demo_lora", peft_type="LORA", family="plugin",
                             description="a plugin's LoRA with a tiny rank",
                             defaults={"r": 2, "lora_alpha": 4}, default_lr=1e-3)


class EchoTask(Task):
    name = "echo"
    max_new_tokens = 4

    def __init__(self, word):
        self.word = word

    def load_split(self, split):
        return [Example(prompt=f"say {self.word}:", target=f" {self.word}", answer=self.word)]

    def extract_answer(self, generated):
        return generated.strip()


def make_echo(argument, options):
    return EchoTask(argument or options.get("word", "hi"))
'''
ENTRY_POINTS = f"""\
[peftbench.methods]
demo_lora = {PLUGIN}:DEMO_LORA

[peftbench.tasks]
echo = {PLUGIN}:make_echo
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A folder holding an installed-looking plugin: its module and its dist-info."""
    (tmp_path / f"{PLUGIN}.py").write_text(PLUGIN_CODE)
    info = tmp_path / f"{PLUGIN}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: peftbench-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return tmp_path


@pytest.fixture
def plugin(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """The plugin on sys.path, discovered by both registries; removed again afterwards."""
    from peftbench.methods import _METHODS
    from peftbench.tasks.base import _REGISTRY

    monkeypatch.syspath_prepend(str(plugin_dir))
    importlib.invalidate_caches()
    for registry in (_METHODS, _REGISTRY):
        registry.discover()
    yield plugin_dir
    _METHODS.unregister("demo_lora")
    _REGISTRY.unregister("echo")
    sys.modules.pop(PLUGIN, None)


def _fresh_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, check=True)


# ---------------------------------------------------------------------- names and hints


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(UserError, match=r"unknown method 'lorra'; see `peftbench methods` for "
                                        r"the catalog; did you mean 'lora'\?"):
        get_method("lorra")
    with pytest.raises(UserError, match=r"unknown task 'arth'; known: .*arith.*; did you mean "
                                        r"'arith'\?"):
        get_task("arth")
    with pytest.raises(UserError) as nothing_close:
        get_method("nope")
    assert "did you mean" not in str(nothing_close.value)


def test_register_rejects_a_taken_name_unless_replacing() -> None:
    registry: Registry[int] = Registry("number")
    registry.register("one", 1)
    registry.register("one", 1)  # the same object again: harmless (a module imported twice)
    with pytest.raises(ValueError, match="'one' is registered already"):
        registry.register("one", 2)
    registry.register("one", 2, replace=True)
    assert registry.get("one") == 2 and "one" in registry and "two" not in registry
    with pytest.raises(ValueError, match="method named .lora. is registered already"):
        register_method(Method(name="lora", peft_type="LORA"))


def test_lazy_entries_are_imported_on_first_use(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lazy_entry_mod.py").write_text("VALUE = {'answer': 42}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded: list[str] = []
    registry: Registry[dict] = Registry(
        "thing", convert=lambda name, obj: loaded.append(name) or obj)
    registry.register("answer", "lazy_entry_mod:VALUE")
    assert registry.names() == ["answer"] and "lazy_entry_mod" not in sys.modules
    assert registry.get("answer") == {"answer": 42} and loaded == ["answer"]
    assert registry.get("answer") is registry.get("answer") and loaded == ["answer"]
    registry.register("broken", "lazy_entry_mod:MISSING")
    with pytest.raises(UserError, match="cannot load thing 'broken' from lazy_entry_mod:MISSING"):
        registry.get("broken")
    sys.modules.pop("lazy_entry_mod", None)


def test_a_lazy_entry_whose_module_registers_itself(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "self_registering.py").write_text(
        "from peftbench.methods import Method, register_method\n"
        "SELF = Method(name='self_registered', peft_type='LORA')\n"
        "register_method(SELF)  # as Delta-LoRA does\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_method("self_registering:SELF", name="self_registered")
    try:
        method = get_method("self_registered")
        assert method is sys.modules["self_registering"].SELF
    finally:
        from peftbench.methods import _METHODS

        _METHODS.unregister("self_registered")
        sys.modules.pop("self_registering", None)


def test_register_method_and_task_in_process() -> None:
    method = Method(name="my_dora", peft_type="LORA", defaults={"r": 4, "use_dora": True},
                    capabilities={"multi_adapter": False})
    register_method(method)
    register_method(f"{__name__}:_factory_method", name="my-factory")

    @register_method(name="my_decorated")
    def decorated() -> Method:
        return Method(name="my_decorated", peft_type="IA3")

    @register_task("my_task")
    def make(argument: str, options: dict) -> Task:
        return _Fixed()

    register("my_old_style")(make)  # the original decorator still registers
    try:
        assert get_method("my_dora") is method and "my_dora" in method_names()
        assert capabilities("my_dora")["merge"]  # LoRA's, with the entry's own over them
        assert not capabilities("my_dora")["multi_adapter"]
        assert get_method("My Factory").name == "my_factory"
        assert get_method("my_decorated") is get_method("my_decorated")  # called once
        assert capabilities("my_decorated") == capabilities("ia3")
        assert isinstance(get_task("my_task"), _Fixed) and "my_old_style" in task_names()
    finally:
        from peftbench.methods import _METHODS
        from peftbench.tasks.base import _REGISTRY

        for name in ("my_dora", "my_factory", "my_decorated"):
            _METHODS.unregister(name)
        for name in ("my_task", "my_old_style"):
            _REGISTRY.unregister(name)


def _factory_method() -> Method:
    return Method(name="my_factory", peft_type="LORA")


class _Fixed(Task):
    def load_split(self, split: str) -> list[Example]:
        return [Example(prompt="1+1=", target="2", answer="2")]

    def extract_answer(self, generated: str) -> str:
        return generated.strip()


# ---------------------------------------------------------------------- plugins


def test_a_plugin_adds_a_technique_and_a_task_through_entry_points(plugin: Path) -> None:
    assert PLUGIN not in sys.modules  # discovered, not imported yet
    assert "demo_lora" in method_names() and "echo" in task_names()
    method = get_method("demo-lora")
    assert method.name == "demo_lora" and method.family == "plugin"
    assert capabilities("demo_lora") == capabilities("lora")
    task = get_task("echo:yes")
    assert task.load_split("test")[0].answer == "yes"
    with pytest.raises(UserError, match="did you mean 'demo_lora'"):
        get_method("demo_lora2")


def test_the_plugin_technique_trains_on_a_tiny_model(plugin: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from methods_helpers import train_briefly

    method = get_method("demo_lora")
    trained = train_briefly(method, "tiny-llama", "causal-lm", steps=3, evaluate=False)
    assert len(trained.losses) == 3 and type(method).steps_seen == 3
    trainable = sum(p.numel() for p in trained.model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in trained.model.parameters()) // 10


def test_peftbench_methods_lists_a_plugin_technique(plugin_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(plugin_dir), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-m", "peftbench.cli", "methods", "--json"],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["demo_lora"]["description"] == "a plugin's LoRA with a tiny rank"
    assert rows["demo_lora"]["merge"] and rows["demo_lora"]["applies"]["causal-lm"]
    assert "lora" in rows and "delta_lora" in rows


# ---------------------------------------------------------------------- the public API


def test_import_peftbench_imports_no_torch_and_names_resolve() -> None:
    code = ("import sys, peftbench, peftbench.methods as m; m.method_names(); "
            "m.get_method('delta_lora'); print(sorted({'torch', 'peft', 'transformers'} "
            "& set(sys.modules)))")
    assert _fresh_python(code).stdout.strip() == "[]"
    assert set(peftbench.__all__) == {"UserError", "__version__", *peftbench._LAZY}
    for name in ("get_method", "register_method", "method_names", "get_task", "register_task",
                 "task_names", "load_results", "aggregate", "recommend", "pareto_frontier",
                 "TournamentConfig", "make_plan"):
        assert callable(getattr(peftbench, name)), name
    assert peftbench.get_method is get_method and peftbench.UserError is UserError
    with pytest.raises(AttributeError):
        peftbench.no_such_name  # noqa: B018
