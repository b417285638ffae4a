"""The HTTP API's limits and its request and response bodies (pydantic), from which FastAPI checks
every request and writes the OpenAPI document. The request models are built per app by
`request_models(limits)`, so the schema states the limits the server really enforces."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; past any of them the answer is a 4xx, before any work."""

    max_body_bytes: int = 1_000_000  # a larger body is refused (413) before it is read in full
    max_batch: int = 256  # questions in one search, screen or add request
    max_question_chars: int = 1_000  # characters in one question (Quora's longest is about 1,100)
    max_id_chars: int = 200  # characters in one user id
    max_k: int = 100  # neighbours per question


def _check_text(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} is empty or only spaces: send some text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} holds an unpaired UTF-16 surrogate (\\ud800-\\udfff): send valid Unicode") from None
    if "\x00" in value:
        raise ValueError(f"{what} holds a NUL character (\\u0000): remove it")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelled field is an error, not silently ignored


def request_models(limits: Limits) -> SimpleNamespace:
    """The request bodies, with `limits` in their constraints (and so in the OpenAPI document)."""
    text_field = {"min_length": 1, "max_length": limits.max_question_chars}
    # strict: JSON's true is not k=1, nor "yes" an upsert
    k_field = Field(5, ge=1, le=limits.max_k, strict=True, description=f"Neighbours per question, 1 to {limits.max_k}.")

    class SearchRequest(_Strict):
        """One `question`, or a batch of `questions`; not both."""

        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"question": "How can I lose weight fast?", "k": 5}, {"questions": ["How old are you?", "What is your age?"], "k": 3}]})
        question: str | None = Field(None, **text_field, description="A question to search for.")
        questions: list[str] | None = Field(None, min_length=1, max_length=limits.max_batch,
                                             description=f"Up to {limits.max_batch} questions, each answered in order.")
        k: int = k_field

        @field_validator("question")
        @classmethod
        def _question(cls, v):
            return v if v is None else _check_text(v, "question")

        @field_validator("questions")
        @classmethod
        def _questions(cls, v):
            if v is not None:
                for i, text in enumerate(v):
                    if len(text) > limits.max_question_chars:
                        raise ValueError(f"questions[{i}] has {len(text):,} characters; the limit is {limits.max_question_chars:,}")
                    _check_text(text, f"questions[{i}]")
            return v

        @model_validator(mode="after")
        def _one_form(self):
            if (self.question is None) == (self.questions is None):
                raise ValueError('send either "question" (one text) or "questions" (a list of texts), not both and not neither')
            return self

    class SimilarityRequest(_Strict):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"question1": "How old are you?", "question2": "What is your age?"}]})
        question1: str = Field(**text_field)
        question2: str = Field(**text_field)

        @field_validator("question1", "question2")
        @classmethod
        def _text(cls, v, info):
            return _check_text(v, info.field_name)

    class QuestionIn(_Strict):
        id: str | None = Field(None, min_length=1, max_length=limits.max_id_chars,
                               description="Your id for the question; leave it out to let the index number it.")
        text: str = Field(**text_field)

        @field_validator("id")
        @classmethod
        def _id(cls, v):
            if v is not None and (v != v.strip() or "\x00" in v):
                raise ValueError("id has leading or trailing spaces or a NUL character: send it trimmed")
            if v is not None:
                _check_text(v, "id")
            return v

        @field_validator("text")
        @classmethod
        def _text(cls, v):
            return _check_text(v, "text")

    class AddRequest(_Strict):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"questions": [{"id": "q-1001", "text": "How do I reset my password?"}], "upsert": False}]})
        questions: list[QuestionIn] = Field(min_length=1, max_length=limits.max_batch,
                                            description=f"Up to {limits.max_batch} questions to add.")
        upsert: bool = Field(False, strict=True, description="Replace the text of an id that is stored with other text (else that is a 409).")

    class ScreenRequest(_Strict):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"questions": ["How old are you?", "What is your age?", "Where is Paris?"], "k": 5}]})
        questions: list[str] = Field(min_length=1, max_length=limits.max_batch,
                                      description=f"Up to {limits.max_batch} new questions to screen.")
        k: int = k_field

        @field_validator("questions")
        @classmethod
        def _questions(cls, v):
            for i, text in enumerate(v):
                if len(text) > limits.max_question_chars:
                    raise ValueError(f"questions[{i}] has {len(text):,} characters; the limit is {limits.max_question_chars:,}")
                _check_text(text, f"questions[{i}]")
            return v

    return SimpleNamespace(SearchRequest=SearchRequest, SimilarityRequest=SimilarityRequest, QuestionIn=QuestionIn,
                           AddRequest=AddRequest, ScreenRequest=ScreenRequest)


# ---------------------------------------------------------------- responses (for the OpenAPI document)


class HitOut(BaseModel):
    id: str | int = Field(description="Your id for the question; a number (the index's own) for a question added without one.")
    text: str
    score: float = Field(description="Cosine similarity, at most 1.")
    duplicate: bool = Field(description="The verdict: the pair head's verdict_score, else the cosine, reaches the threshold in force.")
    verdict_score: float | None = Field(None, description="The pair head's probability that the two are duplicates (absent under the cosine rule).")


class SearchOne(BaseModel):
    hits: list[HitOut] = Field(description="Best first.")


class SearchMany(BaseModel):
    results: list[SearchOne] = Field(description="One per question, in order.")


class SimilarityOut(BaseModel):
    score: float = Field(description="The verdict's score: the pair head's probability, else the cosine.")
    threshold: float
    duplicate: bool
    cosine: float | None = Field(None, description="The cosine, when the pair head decided.")
    verdict: str | None = Field(None, description="head+verifier, head or cosine: which rule decided.")


class AddOutcome(BaseModel):
    id: str | None
    status: str = Field(description="added, replaced or skipped.")
    reason: str | None = Field(None, description="Why a question was skipped.")


class AddOut(BaseModel):
    added: int = Field(description="New questions stored, replacements included.")
    replaced: int
    skipped: int
    count: int = Field(description="Questions in the index afterwards.")
    questions: list[AddOutcome] = Field(description="One per question sent, in order.")


class QuestionOut(BaseModel):
    id: str | int
    text: str
    source: str | None
    added: str = Field(description="When it was added (UTC, ISO 8601).")


class RemoveOut(BaseModel):
    removed: list[str]
    count: int


class ScreenRow(BaseModel):
    in_index: list[HitOut] = Field(description="Its duplicates already in the index, best first.")
    in_batch: list[int] = Field(description="Positions of its duplicates within the request.")


class ScreenOut(BaseModel):
    results: list[ScreenRow]


class InfoOut(BaseModel):
    count: int
    kind: str
    dimension: int
    metric: str
    model: str = Field(description="The model's directory name.")
    model_fingerprint: str
    threshold: float
    threshold_source: str
    version: str = Field(description="dupfinder's version.")
    writes_need_key: bool


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong and how to fix it.")
