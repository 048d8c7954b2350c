"""``launcher serve``: OpenAI's Files and Batches API over chunkpilot runs.

An unmodified ``openai`` client pointed at it (``base_url``) uploads a Batch input file,
creates a batch, polls it and downloads its output and error files; each batch is one
chunkpilot run, planned, driven and collected by the same library path the CLI uses.

Modules, one job each: ``objects`` (OpenAI's object shapes, pure), ``validate`` (an input
file's line rules, pure), ``lifecycle`` (a batch's next step, pure), ``auth`` (bearer keys and
tenants), ``config`` (what the server was started with), ``state`` (files and batches in the
store), ``uploads`` (streaming multipart), ``planning`` (batch → run), ``results`` (run →
result files), ``scheduler`` (the loop over active batches), ``app`` (routes), ``server``
(uvicorn and the scheduler together).
"""
