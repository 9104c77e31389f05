"""The runbook machinery: parameters, steps and runs, errors, commands, secrets, the run lock, notebook glue."""
