"""Demo traffic for ``gatewatch up``: the demo upstream, log parsing, replay and a synthetic mix.

Modules:
  demo_response  pure: what the demo upstream answers for a request's ``x-demo-*`` headers
  upstream       the demo upstream HTTP server (asyncio Protocol + httptools)
  combined_log   pure: Apache/nginx combined and common log line parser, plus a file reader
  replay         sends request specs (from a log or the synthetic mix) to a base URL over HTTP
  synthetic      pure: a seeded synthetic request mix
"""
