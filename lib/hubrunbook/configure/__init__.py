"""Configure.ipynb's own steps."""
