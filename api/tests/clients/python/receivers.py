"""Real receivers for Beacon's notification tests, on 127.0.0.1 port 0.

    python receivers.py smtp     # aiosmtpd SMTP server
    python receivers.py smtp-starttls CERT KEY  # the same, STARTTLS required
    python receivers.py webhook  # HTTP receiver verifying Standard Webhooks

Both print "port N" first. The SMTP server then prints one JSON line per
message received (envelope, headers, text and HTML parts). The webhook
receiver verifies every request with the reference `standardwebhooks`
library (independent of Beacon's signing code) and keeps a log:

    POST /config {"secret": "whsec_...", "fail_first": N, "hold_first": S}
        answer 503 to the first N attempts of each webhook-id; sleep S
        seconds before answering the very first request (to let a test
        kill the sender mid-delivery)
    POST /<anything>   a delivery
    GET  /log          {"attempts": [...], "accepted": {id: times},
                        "held": [ids of requests being held]}
"""

import email
import email.policy
import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def smtp(tls=None):
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            text = msg.get_body(preferencelist=("plain",))
            html = msg.get_body(preferencelist=("html",))
            record = {
                "tls": session.ssl is not None,
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "headers": {k.lower(): str(v) for k, v in msg.items()},
                "text": text.get_content() if text else None,
                "html": html.get_content() if html else None,
                "multipart": msg.get_content_type(),
                "attachments": [
                    {
                        "filename": part.get_filename(),
                        "content_type": part.get_content_type(),
                        "base64": base64.b64encode(part.get_payload(decode=True)).decode(),
                    }
                    for part in msg.iter_attachments()
                ],
            }
            print(json.dumps(record), flush=True)
            return "250 Message accepted for delivery"

    import socket

    # aiosmtpd's controller cannot start on port 0: take a free port first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kwargs = {}
    if tls:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls[0], tls[1])
        kwargs = {"tls_context": context, "require_starttls": True}
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print(f"port {port}", flush=True)
    while True:
        time.sleep(3600)


def webhook():
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    state = {"secret": None, "fail_first": 0, "hold_first": 0.0, "held": False}
    attempts = []
    held = []
    per_id = {}
    accepted = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body=b""):
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            with lock:
                body = json.dumps({"attempts": attempts, "accepted": accepted, "held": held}).encode()
            self.reply(200, body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path == "/config":
                state.update(json.loads(body))
                return self.reply(204)
            with lock:
                hold = state["hold_first"] if not state["held"] else 0
                state["held"] = True
                if hold:
                    held.append(self.headers.get("webhook-id"))
            if hold:
                time.sleep(hold)
            headers = {k.lower(): v for k, v in self.headers.items()}
            wid = headers.get("webhook-id")
            verified, error, payload = False, None, None
            try:
                payload = Webhook(state["secret"]).verify(body, headers)
                verified = True
            except (WebhookVerificationError, Exception) as e:  # noqa: BLE001
                error = f"{type(e).__name__}: {e}"
            with lock:
                n = per_id.get(wid, 0) + 1
                per_id[wid] = n
                status = 503 if n <= state["fail_first"] or not verified else 204
                if status == 204:
                    accepted[wid] = accepted.get(wid, 0) + 1
                attempts.append({
                    "id": wid,
                    "attempt": n,
                    "received_at": time.time(),
                    "timestamp": headers.get("webhook-timestamp"),
                    "signature": headers.get("webhook-signature"),
                    "content_type": headers.get("content-type"),
                    "verified": verified,
                    "error": error,
                    "status": status,
                    "payload": payload,
                })
            self.reply(status)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "smtp-starttls":
        smtp(tls=(sys.argv[2], sys.argv[3]))
    else:
        {"smtp": smtp, "webhook": webhook}[sys.argv[1]]()
