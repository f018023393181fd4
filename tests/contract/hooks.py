"""Schemathesis hooks for tests/contract/run.sh (SCHEMATHESIS_HOOKS=hooks).

NDJSON (`application/x-ndjson`, the import endpoint's second body type) has no serializer in
schemathesis: the body's schema is a string, sent as its text; anything else the fuzzer makes of
it (a negative case) as its JSON text, as schemathesis sends text/* bodies.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode("utf-8")
