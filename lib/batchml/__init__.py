"""batchml: PySpark batch jobs for rating and image dumps."""
__version__ = "0.1.0"
