"""KServe's V2 inference protocol for the predictor (REST `POST /v2/models/<name>/infer` and gRPC ModelInfer).

A V2 request carries the usual JSON request as its one input: a `BYTES` tensor of shape `[1]` (any name). The
answer is one `BYTES` output named `prediction`, shape `[1]`, holding the usual JSON response. Everything in
between (validation, outlinks, scoring, events, error messages) is the V1 path's.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

import orjson
from kserve import InferOutput, InferRequest, InferResponse

from wikiserve.errors import InvalidRequest
from wikiserve.validation import shortened

OUTPUT_NAME = "prediction"
_SHAPE_HINT = "one input: a BYTES tensor of shape [1] holding the JSON request"
MAX_ID_CHARS = 128  # a V2 request's id is echoed in its response: a UUID or a trace id fits easily


def request_body(request: InferRequest) -> Any:
    """The JSON request carried by the V2 request's one BYTES input (decoded; checked by the V1 parser)."""
    if request.id and len(request.id) > MAX_ID_CHARS:
        raise InvalidRequest(f"The V2 request's 'id' has {len(request.id)} characters; at most "
                             f"{MAX_ID_CHARS} are allowed.")
    if len(request.inputs) != 1:
        raise InvalidRequest(f"A V2 request to this model has {_SHAPE_HINT}; this one has "
                             f"{len(request.inputs)} inputs.")
    tensor = request.inputs[0]
    name = shortened(tensor.name)
    if tensor.datatype != "BYTES" or list(tensor.shape) != [1]:
        datatype = shortened(str(tensor.datatype), quoted=False)
        shape = shortened(str(list(tensor.shape)), quoted=False)
        raise InvalidRequest(f"A V2 request to this model has {_SHAPE_HINT}; input {name} is {datatype} of "
                             f"shape {shape}.")
    try:
        elements = tensor.as_numpy().reshape(-1)  # REST: str; gRPC: bytes (contents or raw_input_contents)
    except struct.error:  # gRPC raw_input_contents shorter than an element's length prefix says
        raise InvalidRequest(f"Input {name}'s raw_input_contents is truncated: each BYTES element is a "
                             "4-byte little-endian length followed by that many bytes.") from None
    except (ValueError, TypeError) as error:
        raise InvalidRequest(f"Input {name} does not hold one element of shape [1]: "
                             f"{shortened(str(error), 200, quoted=False)}") from None
    if len(elements) != 1:
        raise InvalidRequest(f"Input {name} must hold exactly one element, not {len(elements)}.")
    element = elements[0]
    # A REST element can be any JSON value; bytes(n) of a number would allocate n bytes (or fail for -1).
    if not isinstance(element, (str, bytes)):
        raise InvalidRequest(f"Input {name}'s element must be a string holding the JSON request, "
                             f"not {type(element).__name__}.")
    try:
        return orjson.loads(element.encode() if isinstance(element, str) else element)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"Input {name} is not a JSON request: {shortened(str(error), 200, quoted=False)}"
                             ) from None


def response(request: InferRequest, model_name: str, model_version: str | None,
             body: dict[str, Any]) -> InferResponse:
    """The V1 response body as the one BYTES output of a V2 response."""
    output = InferOutput(name=OUTPUT_NAME, shape=[1], datatype="BYTES", data=[orjson.dumps(body).decode()])
    return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=model_name,
                         model_version=model_version, infer_outputs=[output])
