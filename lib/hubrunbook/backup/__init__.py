"""backup.ipynb and restore.ipynb (issue 10): archive.py writes and prunes archives, verify.py checks one before
anything is touched, restore.py puts one back onto a prefix."""
