"""Independent check of relaygram's event signatures with the `standardwebhooks` package.

Usage: verify_standard_webhook.py CAPTURE.json

CAPTURE.json holds {"secret": "whsec_…", "headers": {name: value}, "body": "<raw body>"}
as an endpoint received it. Exits 0 and prints "verified OK" when the signature verifies
and a tampered copy of the body is rejected; exits 1 otherwise.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        capture = json.load(f)
    secret = capture["secret"]
    headers = {k.lower(): v for k, v in capture["headers"].items()}
    body = capture["body"]
    hook = Webhook(secret)

    payload = hook.verify(body, headers)
    if payload.get("id") != headers["webhook-id"]:
        print(f"payload id {payload.get('id')!r} differs from webhook-id", file=sys.stderr)
        return 1

    tampered = body.replace('"type":"', '"type":"x', 1)
    if tampered == body:
        tampered = body + " "
    try:
        hook.verify(tampered, headers)
    except WebhookVerificationError:
        pass
    else:
        print("a tampered body verified", file=sys.stderr)
        return 1

    try:
        Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY").verify(body, headers)
    except WebhookVerificationError:
        pass
    else:
        print("a wrong secret verified", file=sys.stderr)
        return 1

    print(f"verified OK: {payload['type']} {payload['id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
