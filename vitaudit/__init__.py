"""vitaudit: pytest-style audits of image classifiers' explanations."""
__version__ = "0.1.0"
