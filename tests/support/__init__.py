"""What tests share, one module per thing it manages. tests/ is on sys.path (pyproject: pythonpath), so tests import
helpers as ``from support.runbook import run_runbook``; fixtures are never imported: the modules that define fixtures
are pytest plugins listed in tests/conftest.py (``pytest_plugins``), and a test just names the fixture.

- sandbox:    test prefixes under HRB_TEST_ROOT, free ports, the one sandbox teardown; fixtures ``sandbox``, ``shared_install``
- runbook:    a runbook run headless through hubrunbook.core.runner (the one papermill runner) and its step statuses
- deployment: working troubleshoot deployments built from the shared install; fixture ``deploy``
- load:       many users' first logins at once (test_load.py, bench/bench_load.py)
- oauth:      OAuth providers (fake GitHub, oidc-provider), a configured hub; fixtures ``oauth_install``, ``hub``
- fakegithub: the fake GitHub OAuth App provider
"""
