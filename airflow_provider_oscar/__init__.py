"""Apache Airflow provider for OSCAR."""

__version__ = "0.1.0"
