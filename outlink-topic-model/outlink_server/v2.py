"""KServe's V2 inference protocol for the predictor (REST `POST /v2/models/<name>/infer` and gRPC ModelInfer).

A V2 request carries the usual JSON request as its one input: a `BYTES` tensor of shape `[1]` (any name). The
answer is one `BYTES` output named `prediction`, shape `[1]`, holding the usual JSON response. Everything in
between (validation, outlinks, scoring, events, error messages) is the V1 path's.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from kserve import InferOutput, InferRequest, InferResponse

from wikiserve.errors import InvalidRequest

OUTPUT_NAME = "prediction"
_SHAPE_HINT = "one input: a BYTES tensor of shape [1] holding the JSON request"


def request_body(request: InferRequest) -> Any:
    """The JSON request carried by the V2 request's one BYTES input (decoded; checked by the V1 parser)."""
    if len(request.inputs) != 1:
        raise InvalidRequest(f"A V2 request to this model has {_SHAPE_HINT}; this one has "
                             f"{len(request.inputs)} inputs.")
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES" or list(tensor.shape) != [1]:
        raise InvalidRequest(f"A V2 request to this model has {_SHAPE_HINT}; input {tensor.name!r} is "
                             f"{tensor.datatype} of shape {list(tensor.shape)}.")
    try:
        elements = tensor.as_numpy().reshape(-1)  # REST: str; gRPC: bytes (contents or raw_input_contents)
    except (ValueError, TypeError) as error:
        raise InvalidRequest(f"Input {tensor.name!r} does not hold one element of shape [1]: {error}") \
            from None
    if len(elements) != 1:
        raise InvalidRequest(f"Input {tensor.name!r} must hold exactly one element, not {len(elements)}.")
    element = elements[0]
    try:
        return orjson.loads(element.encode() if isinstance(element, str) else bytes(element))
    except (orjson.JSONDecodeError, TypeError) as error:
        raise InvalidRequest(f"Input {tensor.name!r} is not a JSON request: {error}") from None


def response(request: InferRequest, model_name: str, model_version: str | None,
             body: dict[str, Any]) -> InferResponse:
    """The V1 response body as the one BYTES output of a V2 response."""
    output = InferOutput(name=OUTPUT_NAME, shape=[1], datatype="BYTES", data=[orjson.dumps(body).decode()])
    return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=model_name,
                         model_version=model_version, infer_outputs=[output])
