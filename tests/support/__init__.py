"""Helpers the tests share: free ports, waiting for servers, running real processes."""
