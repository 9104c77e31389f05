"""Troubleshoot.ipynb: findings, the checks, facts, repairs."""
