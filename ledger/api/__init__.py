"""The API: its operations, each defined once (``operations``), the service answering
them on an open data directory (``service``), their two transports, local and HTTP
(``transport``), the refusals both raise alike (``refusals``), and the API keys that
scope them to a project (``apikeys``).
"""
