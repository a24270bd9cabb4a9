"""ORES's v3 API, in one place: `api.py` (routes, parsing, response shapes), `local.py` (answered by the
models of this process), `proxy.py` (the `ores` image, answered by calling each model's InferenceService;
`python -m revscoring_server.ores`)."""
