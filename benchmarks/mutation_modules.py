"""The core modules ``make mutation`` mutates, each with the test files that exercise it.

A module's mutants run only the tests of its own selection that cover the mutated function
(mutmut records which tests call which function while it collects its stats), so a selection
may be generous: a test file that never reaches the module costs one stats run, no more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Module:
    """``mutate``: globs of the files mutated; ``tests``: the test files or folders to run."""

    mutate: tuple[str, ...]
    tests: tuple[str, ...]
    jobs: int | None = None  # at most this many mutants at once (None: one per core)


PKG = "airflow_provider_oscar"
_UNIT = "tests/unit"
_IT = "tests/integration"
_HOOK_TESTS = (
    f"{_IT}/test_hook_async.py",
    f"{_IT}/test_hook_connection.py",
    f"{_IT}/test_hook_invocations.py",
    f"{_IT}/test_hook_jobs.py",
    f"{_IT}/test_hook_names.py",
    f"{_IT}/test_hook_oidc.py",
    f"{_IT}/test_hook_retries.py",
    f"{_IT}/test_hook_services.py",
)
_LOCAL_TESTS = (
    f"{_IT}/test_local_faults.py",
    f"{_IT}/test_local_hardening.py",
    f"{_IT}/test_local_invocations.py",
    f"{_IT}/test_local_jobs.py",
    f"{_IT}/test_local_limits.py",
    f"{_IT}/test_local_oscar_python.py",
    f"{_IT}/test_local_releases.py",
    f"{_IT}/test_local_security.py",
    f"{_IT}/test_local_services.py",
    f"{_IT}/test_local_storage.py",
    f"{_IT}/test_local_supervisor.py",
    f"{_IT}/test_local_supervisor_process.py",
    f"{_IT}/test_local_types.py",
)

MODULES: dict[str, Module] = {
    "archives": Module(
        (f"{PKG}/archives.py",),
        (
            f"{_UNIT}/test_archives.py",
            f"{_UNIT}/test_results.py",
            f"{_UNIT}/test_fuzz.py",
            f"{_IT}/test_hook_invocations.py",
        ),
    ),
    "bounded_yaml": Module(
        (f"{PKG}/bounded_yaml.py",),
        (
            f"{_UNIT}/test_bounded_yaml.py",
            f"{_UNIT}/test_fdl.py",
            f"{_UNIT}/test_compositions.py",
            f"{_UNIT}/test_fuzz.py",
        ),
    ),
    "compositions": Module(
        (f"{PKG}/compositions/*",),
        (
            f"{_UNIT}/test_compositions.py",
            f"{_UNIT}/test_composition_checks.py",
            f"{_UNIT}/test_composition_dag.py",
            f"{_UNIT}/test_fuzz.py",
            f"{_UNIT}/test_assets.py",
        ),
    ),
    "ensemble": Module(
        (f"{PKG}/ensemble/*",),
        (
            f"{_UNIT}/test_ensemble.py",
            f"{_UNIT}/test_ensemble_fit.py",
            f"{_UNIT}/test_ensemble_operator.py",
            f"{_UNIT}/test_ensemble_dashboard.py",
        ),
    ),
    "hooks.names": Module((f"{PKG}/hooks/names.py",), (f"{_UNIT}/test_names.py", *_HOOK_TESTS)),
    "hooks.connection": Module(
        (f"{PKG}/hooks/connection.py",), (f"{_UNIT}/test_connection_settings.py", *_HOOK_TESTS)
    ),
    "hooks": Module(
        tuple(f"{PKG}/hooks/{name}.py" for name in ("api", "oscar", "storage", "transport")),
        (*_HOOK_TESTS, f"{_IT}/test_fault_matrix.py", f"{_IT}/test_bucket_events.py"),
    ),
    "results": Module(
        (f"{PKG}/results.py", f"{PKG}/prediction.py"),
        (
            f"{_UNIT}/test_results.py",
            f"{_UNIT}/test_results_edges.py",
            f"{_UNIT}/test_fuzz.py",
            f"{_IT}/test_invoke_results.py",
            f"{_IT}/test_invoke_operators.py",
        ),
    ),
    "answers": Module(
        (f"{PKG}/answers.py",),
        (
            f"{_UNIT}/test_answers.py",
            f"{_UNIT}/test_results.py",
            f"{_IT}/test_invoke_results.py",
            f"{_IT}/test_invoke_operators.py",
        ),
    ),
    "fdl": Module(
        (f"{PKG}/fdl.py",),
        (
            f"{_UNIT}/test_fdl.py",
            f"{_UNIT}/test_fdl_reading.py",
            f"{_UNIT}/test_fuzz.py",
            f"{_IT}/test_hook_services.py",
            f"{_IT}/test_batch_jobs.py",  # job names cut as OSCAR cuts them (job_prefix)
        ),
    ),
    "triggers": Module(
        (f"{PKG}/triggers/*",),
        (
            f"{_UNIT}/test_triggers.py",
            f"{_UNIT}/test_coalesce.py",
            f"{_UNIT}/test_assets.py",
            f"{_IT}/test_sensors.py",
            f"{_IT}/test_bucket_events.py",
            f"{_IT}/test_fault_matrix.py",
        ),
    ),
    "operators": Module(
        (f"{PKG}/operators/*",),
        (
            f"{_UNIT}/test_ensemble_operator.py",
            f"{_UNIT}/test_assets.py",
            f"{_IT}/test_invoke_operators.py",
            f"{_IT}/test_service_operators.py",
            f"{_IT}/test_batch_operator.py",
            f"{_IT}/test_routing.py",
            f"{_IT}/test_fault_matrix.py",
        ),
    ),
    "local.handlers": Module((f"{PKG}/local/handlers/*",), _LOCAL_TESTS),
    # the reaper runs in its own isolated interpreter (python -I -S), out of mutmut's reach
    "local.runtime": Module(
        (
            f"{PKG}/local/runtime.py",
            *(
                f"{PKG}/local/supervisor/{name}.py"
                for name in ("events", "logs", "process", "response", "storage")
            ),
        ),
        _LOCAL_TESTS,
    ),
    # every UI test migrates and serves the one Airflow database: one mutant at a time
    "plugins.app": Module(
        (f"{PKG}/plugins/app.py",),
        (
            "tests/ui/test_api.py",
            "tests/ui/test_permissions.py",
            "tests/ui/test_plugin_units.py",
            "tests/ui/test_route_parameters.py",
            f"{_UNIT}/test_ensemble_dashboard.py",
        ),
        jobs=1,
    ),
}
