"""The API: the operations of the HTTP API, defined once, and the API keys that scope them to a
project.
"""
