"""Loopback fakes of the outside world: GitHub, Kapa.ai and a Slack-compatible webhook.

Real HTTP servers (``http.server.ThreadingHTTPServer`` in a daemon thread), bound to 127.0.0.1 on a free
port unless told otherwise, so plugins talk to them with their real ``requests`` code::

    from tests.fakes.github import FakeGitHub
    with FakeGitHub(token="t0k") as gh:              # start()/stop() also work
        gh.add_pr("o/r", merged_at=now, additions=5, deletions=1)
        ...  # plugin args: github_api_url=gh.url
        assert gh.count("detail") == 1               # requests counted by kind
        gh.fail_next(2, status=503)                  # the next 2 requests fail (any kind)
        gh.fail_next(status=403, headers={"retry-after": "0"}, kind="list")
        gh.fail_next(delay=2.0)                      # answer late: a read timeout for a 1 s client
        gh.fail_next(malformed=True)                 # 200 with a body that is not JSON
        gh.fail_next(graphql_errors=[{"message": "Something went wrong"}], kind="graphql")

Modules:
- ``base``: FakeServer (lifecycle, counting, recorded requests with headers, faults), ``blackhole()`` (a
  URL whose connects time out).
- ``github``: FakeGitHub (REST list with Link pagination, single PR, a PR's files with Link pagination,
  GraphQL pullRequests with cursors and nested ``files``, a PR's further file pages, rateLimit, an enforced
  rate limit answered as GitHub does (REST 403, GraphQL 200 RATE_LIMITED), auth check). Files per PR:
  ``add_pr(..., files=[...])`` / ``set_files``; ``ChangedFile(path, additions, deletions, status,
  previous_path)``.
- ``kapa``: FakeKapa (sources with page/page_size pagination and count, X-API-KEY check).
- ``webhook``: FakeWebhook (records POSTed JSON).
- ``sample``: deterministic demo data relative to now (repo influxdata/docs-v2, project demo-project).

For ``make demo`` and the stack tests, serve the sample data until SIGTERM/SIGINT::

    python -m tests.fakes --github-port 8301 --kapa-port 8302 [--host 0.0.0.0]

It prints ``GITHUB_API_URL=<url>`` and ``KAPA_API_URL=<url>`` (flushed) once listening, and accepts any
non-empty token or API key. Use ``--host 0.0.0.0`` only where a container must reach the fakes.
"""
