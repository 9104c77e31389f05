"""Install.ipynb's own steps."""
