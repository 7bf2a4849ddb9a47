"""Request and response bodies (msgspec Structs; Litestar derives the OpenAPI schema)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import msgspec

from bluegreen.serving.contract import LABELS

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Schema
    from litestar.plugins import OpenAPISchemaPluginProtocol
    from litestar.typing import FieldDefinition

Sentiment = Annotated[
    str, msgspec.Meta(description="One of " + ", ".join(LABELS), examples=["긍정"])
]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Text = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        description="Review text; non-empty after trimming, at most BLUEGREEN_MAX_TEXT_CHARS",
        examples=["정말 재미있는 영화였어요!"],
    ),
]


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    text: Text


class BatchPredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    texts: Annotated[
        list[Text],
        msgspec.Meta(
            min_length=1,
            description="1..BLUEGREEN_MAX_BATCH texts",
            examples=[["최고의 영화", "시간 낭비"]],
        ),
    ]


class SentimentResult(msgspec.Struct):
    sentiment: Sentiment
    score: Annotated[Probability, msgspec.Meta(description="Probability of `sentiment`")]
    details: Annotated[
        dict[str, Probability], msgspec.Meta(description="Probability per label, summing to 1")
    ]


class PredictResponse(msgspec.Struct):
    sentiment: Sentiment
    score: Probability
    details: dict[str, Probability]
    model_version: int
    model_slot: str


class BatchPredictResponse(msgspec.Struct):
    results: list[SentimentResult]
    model_version: int
    model_slot: str


class ErrorBody(msgspec.Struct, omit_defaults=True):
    status_code: int
    error: str
    detail: str
    field: str | None = None
    request_id: Annotated[
        str | None,
        msgspec.Meta(description="The request's id, as in the X-Request-ID response header"),
    ] = None


class HealthBody(msgspec.Struct, omit_defaults=True):
    status: str
    version: int | None = None
    slot: str | None = None
    reason: str | None = None


MAX_VERSION = 2**31 - 1
"""MLflow keeps version numbers in a 32-bit column: past it the registry answers 500."""
Version = Annotated[
    int, msgspec.Meta(ge=1, le=MAX_VERSION, description="A registered version of the model")
]


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    version: Version | None = None


class CanaryRequest(msgspec.Struct, forbid_unknown_fields=True):
    percent: Annotated[float, msgspec.Meta(ge=0, le=100)]


class RejectRequest(msgspec.Struct, forbid_unknown_fields=True):
    version: Version
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class UnrejectRequest(msgspec.Struct, forbid_unknown_fields=True):
    version: Version


class HistoryEntryBody(msgspec.Struct):
    version: int
    from_version: int | None
    action: Annotated[
        str,
        msgspec.Meta(description="promote, pin, rollback, canary, repair or bootstrap"),
    ]
    who: str
    why: str
    at: Annotated[float, msgspec.Meta(description="Unix seconds")]


class AliasBody(msgspec.Struct):
    name: str
    version: int | None


class VersionBody(msgspec.Struct):
    version: int
    rejected: Annotated[str | None, msgspec.Meta(description="Why it was rejected, if it is")]
    created_at: float
    in_history: bool


class VersionsResponse(msgspec.Struct):
    model: str
    alias: AliasBody
    live_version: Annotated[int | None, msgspec.Meta(description="What this process serves")]
    history: Annotated[list[HistoryEntryBody], msgspec.Meta(description="Newest first")]
    versions: Annotated[list[VersionBody], msgspec.Meta(description="Newest first")]


def strict_struct_schema_plugin() -> OpenAPISchemaPluginProtocol:
    """OpenAPI plugin: Structs declared `forbid_unknown_fields` get `additionalProperties: false`,
    so the published schema says what the server enforces (unknown fields → 400).

    Litestar's own Struct plugin is not public API; it is imported here, at app build time.
    """
    from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin

    class StrictStructSchemaPlugin(StructSchemaPlugin):
        def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
            config = getattr(field_definition.annotation, "__struct_config__", None)
            return bool(config is not None and config.forbid_unknown_fields)

        def to_openapi_schema(
            self, field_definition: FieldDefinition, schema_creator: SchemaCreator
        ) -> Schema:
            schema = super().to_openapi_schema(field_definition, schema_creator)
            schema.additional_properties = False
            return schema

    return StrictStructSchemaPlugin()
