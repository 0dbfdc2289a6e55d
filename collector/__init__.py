"""The collector: ingests access events, keeps sliding-window statistics, serves the JSON API."""
