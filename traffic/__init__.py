"""Demo traffic for ``gatewatch up``: the demo upstream, log parsing, replay and a synthetic mix.

Modules:
  demo_response  pure: what the demo upstream answers for a request's ``x-demo-*`` headers
  upstream       the demo upstream HTTP server (asyncio Protocol + httptools)
  combined_log   pure: Apache/nginx combined and common log line parser, plus a file reader
  spec           pure: RequestSpec (shared by replay and synthetic) and log record -> spec
  replay         sends request specs (from a log or the synthetic mix) to a base URL over HTTP
  progress       terminal progress bar for traffic runs
  synthetic      pure: a seeded synthetic request mix
"""
