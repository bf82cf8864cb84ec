"""JMESPath functions for keys inside encoded payloads (an SQS body, a base64 Kinesis record).

The names are the ones Powertools for AWS Lambda registers, so a key expression such as
``powertools_json(body).order_id`` selects the same value, and hashes to the same key, in
both libraries.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from jmespath import functions

__all__ = ["KeyFunctions"]


class KeyFunctions(functions.Functions):
    """``powertools_json``, ``powertools_base64`` and ``powertools_base64_gzip``."""

    @functions.signature({"types": ["string"]})
    def _func_powertools_json(self, value: str) -> Any:
        return json.loads(value)

    @functions.signature({"types": ["string"]})
    def _func_powertools_base64(self, value: str) -> str:
        return base64.b64decode(value).decode()

    @functions.signature({"types": ["string"]})
    def _func_powertools_base64_gzip(self, value: str) -> str:
        return gzip.decompress(base64.b64decode(value)).decode()
