"""Child of bench/cold_start.py: import a Lambda handler, answer one or more HTTP API v2 GETs.

    python bench/invoke_once.py MODULE PATH [WARM_INVOCATIONS]

Exits non-zero unless every answer is 200; with WARM_INVOCATIONS, prints the mean microseconds
per warm invocation.
"""

import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> None:
    module_name, path = sys.argv[1], sys.argv[2]
    warm = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    root = Path(__file__).resolve().parents[1]
    event = json.loads((root / "events" / "http_v2_get_user.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    module = importlib.import_module(module_name)
    response = module.handler(event, Context())
    if response["statusCode"] != 200:
        raise SystemExit(f"{module_name}: {response['statusCode']} {response.get('body')}")
    if warm:
        start = time.perf_counter()
        for _ in range(warm):
            module.handler(event, Context())
        print((time.perf_counter() - start) / warm * 1e6)


if __name__ == "__main__":
    main()
