"""The "OSCAR" page of the Airflow UI: clusters, services, jobs and composite-AI results.

:class:`~airflow_provider_oscar.plugins.oscar.OscarPlugin` registers a FastAPI app under
``/oscar`` (server-rendered HTML and a JSON API; every route requires an authenticated Airflow
user) and an external view that shows it inside the UI's navigation.
"""
