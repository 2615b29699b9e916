"""Shared by the examples: where the server is and which key to use.

Start a server and make a key first:

    llmring keys create --project demo        # prints the key once
    llmring serve --port 8000 &
    export LLMRING_SERVER_URL=http://127.0.0.1:8000 LLMRING_API_KEY=llr_...
"""

from __future__ import annotations

import os
import sys


def server() -> tuple[str, str]:
    url = os.environ.get("LLMRING_SERVER_URL", "http://127.0.0.1:8000")
    key = os.environ.get("LLMRING_API_KEY")
    if not key:
        sys.exit("set LLMRING_API_KEY (create one with `llmring keys create --project NAME`)")
    return url, key
