"""Oauth.ipynb: settings, steps and checks."""
