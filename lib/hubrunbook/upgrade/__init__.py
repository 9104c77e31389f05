"""upgrade.ipynb: a new hub env and proxy built next to the live ones, swapped in, verified, rolled back on failure."""
