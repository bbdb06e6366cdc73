"""The production topology on one machine, natively: ``make stack`` and the stack tests.

Postgres (metadata DB and Celery results) and Redis (Celery broker) from the system's packages,
Airflow's API server, scheduler, DAG processor and triggerer, two Celery workers, and two
embedded OSCARs (``oscar_default`` and ``oscar_second``). Every file lives under one folder
(``.stack/`` for ``make stack``), so a second start reuses its database and secrets.

* :mod:`stack.settings`: the folder, the secrets, the ports and every process's environment;
* :mod:`stack.processes`: starting, watching, restarting and stopping processes by id;
* :mod:`stack.components`: what each component runs and how it is known to be ready;
* :mod:`stack.runner`: :class:`~stack.runner.Stack`, the whole topology in order;
* :mod:`stack.client`: Airflow's REST API, for the tests and the benchmark.
"""
