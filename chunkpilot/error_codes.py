"""Every error code chunkpilot emits, with what it means and what to do about it.

The codes themselves are raised where they arise (record parsing, request validation, the engine,
``collect``, ``launcher serve``); this registry is their documentation, and the docs' error-code
page is rendered from it. ``tests/docs/test_error_codes.py`` reads the source and fails when a code
is emitted that is not listed here, or listed here and emitted nowhere.

Scopes: ``record`` — the ``error.code`` of an output line (a record that could not be answered);
``batch-file`` — why ``launcher serve`` failed an uploaded Batch input file in ``validating``;
``api`` — the ``error.code`` of an HTTP error from ``launcher serve``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    scope: str
    code: str
    meaning: str
    what_to_do: str


def _codes(scope: str, *rows: tuple[str, str, str]) -> tuple[ErrorCode, ...]:
    return tuple(ErrorCode(scope, code, meaning, what) for code, meaning, what in rows)


RECORD = _codes(
    "record",
    ("invalid_json", "The input line is not valid JSON (the message gives the column).",
     "Fix the line in the input and submit the records again (a new run, or `--limit` to try a few)."),
    ("invalid_utf8", "The line's bytes are not UTF-8 (the message gives the byte).",
     "Re-encode the file as UTF-8 (`iconv -f latin1 -t utf-8`)."),
    ("not_an_object", "The line is JSON but not an object (`[1,2]`, `\"x\"`, `42`).",
     "Make every line one JSON object; its text is kept in `<key>_input` by `collect --format records`."),
    ("invalid_row", "A CSV/TSV row cannot be parsed (an unclosed quote, for example).",
     "Fix the quoting on the line named in the message."),
    ("ragged_row", "A CSV/TSV row has more or fewer fields than the header.",
     "Fix the row named in the message, or quote fields that hold the delimiter."),
    ("missing_prompt", "A generate record has neither `prompt` nor `messages` (or an empty `messages`, or a "
     "non-string `prompt`).",
     "Build the prompt from the record's fields: `--input-key FIELD` or `--prompt-template`."),
    ("missing_input", "An embed record has no text to embed (no `input`, no `--input-key` field).",
     "Pass `--input-key FIELD` or `--prompt-template`, or give each record an `input`."),
    ("empty_input", "A text to embed is empty.", "Drop or fill empty texts; the record is otherwise kept."),
    ("invalid_messages", "A chat message lacks `role`/`content`, holds non-text parts, or the model's chat "
     "template cannot render it.", "Send text messages `{\"role\", \"content\"}`; for a model without a chat "
     "template use `--raw-prompt`."),
    ("invalid_custom_id", "`custom_id` (or the `--id-key` field) is an object or a list.",
     "Use a string or an integer id, or leave it out (the record's position is used)."),
    ("invalid_method", "An OpenAI Batch line whose `method` is not `POST`.", "Set `\"method\": \"POST\"`."),
    ("invalid_body", "An OpenAI Batch line whose `body` is not an object.", "Put the request in `body` as a JSON object."),
    ("unsupported_url", "An OpenAI Batch line whose `url` chunkpilot does not serve.",
     "Use `/v1/chat/completions`, `/v1/completions` or `/v1/embeddings`."),
    ("wrong_task", "A Batch line for the other task (`/v1/embeddings` in a generate run, or the reverse).",
     "Submit embeddings with `--task embed` and generation without it: one task per run."),
    ("invalid_parameter", "A sampling or request field of the wrong type or shape (`\"max_tokens\": \"ten\"`, "
     "both `response_format` and `structured_outputs`).", "Fix the field named in the message."),
    ("invalid_request", "A value out of range (`temperature: -1`), an empty prompt, or one the engine rejects.",
     "Fix the value named in the message."),
    ("unsupported_parameter", "A field that would change the answer and that chunkpilot does not honour: vLLM's "
     "old `guided_*` keys, `tools`, `n` other than 1, token-id inputs.",
     "Remove it, or use what the message names instead (`response_format`, `structured_outputs`, "
     "`--json-schema`)."),
    ("template_error", "`--prompt-template`/`--input-key` cannot render this record: a field it names is "
     "missing or null, or the rendered prompt is empty.",
     "Fill the field, or guard it in the template (`{% if body %}…{% endif %}`, `{{ body | default('') }}`)."),
    ("prompt_too_long", "The prompt (or text to embed) has more tokens than the model accepts.",
     "Raise `--engine-option max_model_len=…` if the model allows it, shorten the input, or for embeddings "
     "pass `--truncate`."),
    ("invalid_structured_output", "The answer does not parse or validate against `--json-schema`/`--choice`/"
     "`--regex`/`response_format` — usually cut short by `max_tokens` (the message gives the finish reason).",
     "Raise `--max-tokens`, or loosen the schema (`maxLength` on strings)."),
    ("engine_error", "vLLM finished the request with `abort` or `error`.",
     "Retry the records (a new run over them); if it repeats, read the worker's log."),
    ("not_answered", "`collect --allow-partial`: the record's chunk is not done, or no answer was committed "
     "for it.", "Finish the run (`launcher watch RUN`) and collect again."),
    ("filtered_out", "Pipelines: a `filter` step dropped the record (the message names the filter). It is not "
     "an error of the step after it, and it is not lost: `collect` writes it to `<out>.dropped.jsonl`.",
     "Nothing, if the filter meant it; otherwise edit the filter and submit the pipeline again (steps "
     "before it are reused)."),
    ("upstream_error", "Pipelines: an earlier step could not answer the record, so this step had nothing to read.",
     "Look up the record's error in the earlier step (`collect RUN --step NAME`) and fix that."),
    ("error", "An output line whose `error` is not an object (written by something other than chunkpilot).",
     "Check where the output lines came from; chunkpilot itself always writes `{code, message}`."),
)

BATCH_FILE = _codes(
    "batch-file",
    ("invalid_json_line", "A line of the uploaded file is not a JSON object.", "Fix the line named (`line`)."),
    ("missing_custom_id", "A line without a non-empty string `custom_id`.", "Give every request a `custom_id`."),
    ("duplicate_custom_id", "Two lines share a `custom_id`.", "Make each request's `custom_id` unique."),
    ("invalid_method", "A line whose `method` is not `POST`.", "Set `\"method\": \"POST\"`."),
    ("mismatched_url", "A line whose `url` differs from the batch's `endpoint`.",
     "Use one endpoint per batch, the one given to `batches.create`."),
    ("invalid_body", "A line whose `body` is not an object.", "Put the request in `body` as a JSON object."),
    ("missing_model", "A line whose `body.model` is missing.", "Name one of the models from `GET /v1/models`."),
    ("mismatched_model", "Lines name different models.", "One model per batch: split the file."),
    ("model_not_found", "The file's model is not served by this server.",
     "Use a name from `GET /v1/models`, or start the server with `--model NAME=TARGET`."),
    ("empty_file", "The file holds no requests.", "Upload a file with at least one request line."),
)

API = _codes(
    "api",
    ("missing_api_key", "The server needs a key and the request has none.",
     "Pass `api_key=` to the client (the value of a variable named by `--api-key-env`)."),
    ("invalid_api_key", "The key is not one of the server's.", "Use a key from a `--api-key-env` variable."),
    ("invalid_content_type", "An upload that is not `multipart/form-data`.",
     "Upload with `client.files.create(file=…, purpose=\"batch\")`."),
    ("invalid_multipart", "The multipart body cannot be parsed.", "Retry the upload with an ordinary client."),
    ("invalid_file", "More than one file in one upload.", "Upload one file per request."),
    ("missing_file", "An upload without a `file` part.", "Send the file as the `file` field."),
    ("file_too_large", "The upload is larger than `--max-upload-bytes` (default 8 GiB).",
     "Split the file, or restart the server with a larger `--max-upload-bytes`."),
    ("invalid_purpose", "An upload whose `purpose` is not `batch`.", "Upload with `purpose=\"batch\"`."),
    ("file_not_found", "No file with that id (for this key).", "List files with `GET /v1/files`."),
    ("file_in_use", "The file is the input of a batch that has not finished.", "Cancel the batch or wait."),
    ("batch_not_found", "No batch with that id (for this key).", "List batches with `GET /v1/batches`."),
    ("batch_not_cancellable", "The batch is past `validating`/`in_progress`.", "Nothing to do: it has ended."),
    ("invalid_body", "The request body is not a JSON object.", "Send a JSON object."),
    ("invalid_json", "The request body is not valid JSON.", "Send valid JSON."),
    ("unknown_parameter", "`batches.create` got a field OpenAI's API does not have.", "Remove it."),
    ("missing_required_parameter", "`batches.create` without `input_file_id`, `endpoint` or `completion_window`.",
     "Pass the parameter named."),
    ("invalid_endpoint", "An endpoint the server does not serve.",
     "Use `/v1/chat/completions`, `/v1/completions` or `/v1/embeddings`."),
    ("invalid_completion_window", "A completion window that is not `<N>h`.", "Pass e.g. `\"24h\"`."),
    ("invalid_metadata", "Metadata that is not at most 16 string pairs of OpenAI's sizes.",
     "Shorten or drop the metadata."),
    ("invalid_input_file", "The input file was not uploaded with `purpose=\"batch\"`.",
     "Upload it again with `purpose=\"batch\"`."),
    ("invalid_limit", "`limit` outside what the list takes.", "Pass a limit in the range the message gives."),
    ("model_not_found", "`GET /v1/models/{model}` for a name not served.", "List the names with `GET /v1/models`."),
    ("unknown_url", "No such route.", "Check the client's `base_url` ends in `/v1`."),
    ("store_unavailable", "The server cannot reach its `--store`.",
     "Retry; if it lasts, check the store's credentials and endpoint where the server runs."),
)

ERROR_CODES: tuple[ErrorCode, ...] = RECORD + BATCH_FILE + API
