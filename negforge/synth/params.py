"""One generation-params object, validated at construction; each backend maps it in one place."""

from __future__ import annotations

import json
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


class GenParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    # Always set explicitly: servers' defaults (vLLM: 16) silently truncate JSON.
    max_tokens: int = Field(512, ge=1, le=32768)
    seed: Optional[int] = 0
    stop: list[str] = Field(default_factory=list, max_length=8)
    # Ask for a JSON object (OpenAI response_format / vLLM structured outputs) where supported.
    json_mode: bool = True
    # With json_mode: the JSON schema the reply must follow (OpenAI ``json_schema`` response format,
    # grammar-constrained on llama.cpp / vLLM). The generation flow sets it per step; None: any object.
    json_schema: Optional[dict[str, Any]] = None

    def cache_key(self) -> str:
        """The params' part of an LLM cache key. ``"n": 1`` stays in it (after ``seed``) so that replies
        cached before ``GenParams.n`` was removed (every backend returns one completion per row) still hit."""
        items = list(self.model_dump(mode="json").items())
        items.insert([k for k, _ in items].index("seed") + 1, ("n", 1))
        return json.dumps(dict(items), separators=(",", ":"), ensure_ascii=False)
