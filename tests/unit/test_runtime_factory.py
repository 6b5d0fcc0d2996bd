"""One factory builds the broker and the actors; only ``crmtasks.tasks`` does things when imported.

The checks run in fresh interpreters: an import made by another test of
this session must not hide one made by the module under test. Building a
RedisBroker does not connect, so no Redis is needed.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "crmtasks"


def _python(code: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CRMTASKS_HOME=str(home), REDIS_URL="redis://127.0.0.1:1/0")
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_importing_the_cli_and_the_dashboard_neither_imports_crmtasks_tasks_nor_sets_a_broker(tmp_path):
    _python("""
        import sys
        import dramatiq.broker
        import crmtasks.cli, crmtasks.cli.run, crmtasks.web.app, crmtasks.broker.factory

        assert "crmtasks.tasks" not in sys.modules, "crmtasks.tasks was imported"
        assert dramatiq.broker.global_broker is None, "a global broker was set"
    """, tmp_path)


def test_build_runtime_declares_one_actor_per_registered_job_on_its_own_broker(tmp_path):
    _python("""
        import sys
        import dramatiq.broker
        from crmtasks.broker.factory import Runtime, build_runtime
        from crmtasks.jobs import registry
        from crmtasks.settings import get_settings

        runtime = build_runtime(get_settings())
        assert isinstance(runtime, Runtime)
        assert list(runtime.actors) == registry.names()
        for spec in registry.JOBS:
            actor = runtime.actors[spec.name]
            assert actor.broker is runtime.broker and runtime.broker.get_actor(spec.actor_name) is actor
            assert actor.options["job_name"] == spec.name
        assert {spec.queue for spec in registry.JOBS} <= runtime.broker.get_declared_queues()
        try:
            runtime.actors["other"] = None
        except TypeError:
            pass
        else:
            raise AssertionError("the actors of a Runtime can be replaced")
        assert "crmtasks.tasks" not in sys.modules and dramatiq.broker.global_broker is None
    """, tmp_path)


def test_the_dashboard_is_built_from_the_factory_not_from_crmtasks_tasks(tmp_path):
    _python("""
        import sys
        from crmtasks.jobs import registry
        from crmtasks.settings import get_settings
        from crmtasks.web.app import build_app

        app = build_app(get_settings())
        assert sorted(app.pages.actors) == sorted(registry.names())
        assert app.queues.broker is next(iter(app.pages.actors.values())).broker
        assert "crmtasks.tasks" not in sys.modules
    """, tmp_path)


def test_the_worker_module_uses_the_factory_and_sets_the_global_broker(tmp_path):
    _python("""
        import dramatiq
        import crmtasks.tasks as tasks

        assert dramatiq.get_broker() is tasks.broker is tasks.runtime.broker
        assert tasks.actors is tasks.runtime.actors
    """, tmp_path)


def _imports_crmtasks_tasks(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(alias.name == "crmtasks.tasks" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom):
            if node.module == "crmtasks.tasks":
                return True
            if node.module == "crmtasks" and any(alias.name == "tasks" for alias in node.names):
                return True
    return False


def test_no_crmtasks_module_imports_crmtasks_tasks():
    importers = [str(path.relative_to(ROOT)) for path in sorted(PACKAGE.rglob("*.py"))
                 if _imports_crmtasks_tasks(path)]
    assert importers == []
