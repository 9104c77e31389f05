"""hubrunbook: the library behind the JupyterHub runbooks."""
__version__ = "0.1.0"
