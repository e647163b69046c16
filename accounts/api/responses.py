"""The API's JSON answers, serialized by orjson (the hot routes return them directly, skipping
FastAPI's response validation and encoding)."""
from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
